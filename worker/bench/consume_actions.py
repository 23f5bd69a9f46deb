"""The connector-fleet worker of ``bench consume`` for a network capability: the same
consumer as ``worker.bench.consume_worker``, with the rule calling ``email_send``,
``slack_message`` or ``pump_control`` against its peer (``worker.bench.action_peers``),
which this process starts on a free port of 127.0.0.1 and stops when it ends.

Each event is one real delivery: an SMTP session that sends one message, or one
``chat.postMessage`` request, plus the sent ledger's read and write in Redis (what
keeps a redelivery from sending twice); for ``pump_control``, one Modbus TCP session
(connect, write the speed register, close).

``python -m worker.bench.consume_actions REDIS_URL MAX_IN_FLIGHT CAPABILITY``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from framework.consuming import CapabilityRegistry, CapabilitySpec
from framework.core import configure_logging
from framework.testing import free_port
from providers.email import EmailActions, SmtpSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from providers.plant import PlantSettings, pump_control_spec
from providers.slack import SlackActions
from worker.bench.action_peers import BENCH_SLACK_TOKEN
from worker.bench.consume_worker import serve_rules
from worker.bench.load import STREAM
from worker.runtime import run_event_loop

# The systems of bench consume this worker runs: capability -> its peer.
ACTION_PEERS = {"email_send": "smtp", "slack_message": "slack", "pump_control": "modbus"}
_PARAMS: dict[str, dict[str, Any]] = {
    "email_send": {"to": ["ops@plant.test"], "from": "fleet@plant.test",
                   "subject": "bench tick {{ payload.sent_ms }}", "text": "tick"},
    "slack_message": {"channel": "C0BENCH", "text": "bench tick {{ payload.sent_ms }}"},
    # One Modbus TCP session per event: connect, write the speed register, close.
    "pump_control": {"pumpId": "P-01", "action": "set_speed", "speed": 50},
}


def rules_for(capability: str) -> dict[str, Any]:
    return {"version": 1, "rules": [{
        "name": "bench", "match": {"streams": [STREAM], "type": "bench.tick"},
        "steps": [{"id": "send", "call": capability, "version": "^1",
                   "allowHosts": ["127.0.0.1"], "params": _PARAMS[capability]}],
    }]}


def spec_for(capability: str, port: int, client: GuardedClient) -> CapabilitySpec:
    if capability == "email_send":
        settings = SmtpSettings(host="127.0.0.1", port=port, security="none")
        return EmailActions(settings, client=client).spec()
    if capability == "pump_control":
        return pump_control_spec(PlantSettings.model_validate({
            "devices": {"plc": {"protocol": "modbus", "host": "127.0.0.1", "port": port}},
            "pumps": {"P-01": {"device": "plc", "run": {"coil": 0},
                               "speed": {"holding": 10, "scale": 0.1}}}}))
    secrets = EnvSecrets({"SLACK_BOT_TOKEN": BENCH_SLACK_TOKEN})
    return SlackActions(client=client, secrets=secrets,
                        api_base=f"http://127.0.0.1:{port}/api").spec()


@contextmanager
def running_peer(capability: str) -> Iterator[int]:
    port = free_port()
    peer = subprocess.Popen([sys.executable, "-m", "worker.bench.action_peers",
                             ACTION_PEERS[capability], str(port)], stdout=subprocess.PIPE)
    try:
        assert peer.stdout is not None
        if peer.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"bench consume: the {ACTION_PEERS[capability]} peer did not "
                               f"start (exit code {peer.poll()})")
        yield port
    finally:
        peer.terminate()
        peer.wait(10)


async def serve(url: str, max_in_flight: int, capability: str, port: int) -> int:
    client = GuardedClient()
    registry = CapabilityRegistry()
    registry.register(spec_for(capability, port, client))
    try:
        return await serve_rules(url, max_in_flight, registry, rules_for(capability))
    finally:
        await client.aclose()


if __name__ == "__main__":
    configure_logging("WARNING")
    name = sys.argv[3]
    with running_peer(name) as peer_port:
        sys.exit(run_event_loop(serve(sys.argv[1], int(sys.argv[2]), name, peer_port)))
