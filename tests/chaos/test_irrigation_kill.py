"""The irrigation close survives a kill -9 of the consumer that opened the valve: a
real ``connector-fleet consume`` process (signed catalog: the step holds the zone's
permit) opens a zone for a few seconds and is killed right after, maybe still
holding that permit; another consumer process (of another stream: it never sees
the event) closes the valve when it is due, not before, and within its sweep
interval, half its lease (the permit's wait) and a margin for the loaded machine;
the valve is not opened again, and the close is in the audit chain."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.core import create_redis
from framework.testing import RedisServer
from framework.trust import AuditChain, AuditRecord
from providers.modbus.register_simulator import RegisterSimulator
from providers.plant import CLOSES_KEY
from tests.chaos.test_modbus_kill import DeviceThread
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.process import BIN, ConnectorProcess, write_config
from tests.providers.messaging_rig import definition_path
from tests.providers.plant_rig import ZONE_COILS, plant_config

pytestmark = pytest.mark.slow  # real processes, a kill and a restart

STREAM = "irrigation-requests"
GROUP = "irrigators"
COIL = ZONE_COILS["Z-02"]
DEFINITION = definition_path("plant", "irrigation_control")
DURATION_S = 6
# How late the surviving consumer may close: its sweep interval (100 ms), half its
# lease (1 s: the wait for a permit the killed one may still hold), and room for a
# loaded 2-core machine to schedule it.
LATE_MARGIN_MS = 3500


def consumer(name: str, tmp_path: Path, url: str, device: RegisterSimulator,
             stream: str = STREAM) -> ConnectorProcess:
    plant = plant_config(device, sweepIntervalMs=100, closeLeaseMs=2000)
    return ConnectorProcess(
        name, redis_url=url, config=write_config(tmp_path / "connectors.json"),
        log=tmp_path / f"{name}.log",
        env={"PLANT_CONFIG_JSON": orjson.dumps(plant).decode(),
             "CATALOG_TRUSTED_KEYS": str(tmp_path / "keys" / "catalog-signing.pub.json")},
        command=("connector-fleet", "consume", "--rules", str(tmp_path / "rules.json"),
                 "--stream", stream, "--group", GROUP, "--consumer", name,
                 "--start-id", "0", "--claim-idle-ms", "1000"))


def register_signed_definition(tmp_path: Path, url: str) -> None:
    """``irrigation_control``'s template, signed with a fresh key, through the CLI."""
    env = {"REDIS_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
           "CATALOG_TRUSTED_KEYS": str(tmp_path / "keys" / "catalog-signing.pub.json")}
    for args in (("keygen", "--out", str(tmp_path / "keys")),
                 ("register", "--file", str(DEFINITION),
                  "--sign-with", str(tmp_path / "keys" / "catalog-signing.pem"))):
        done = subprocess.run([str(BIN / "connector-fleet"), "catalog", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


async def audit_of(url: str) -> tuple[bool, list[AuditRecord]]:
    client = create_redis(url)
    try:
        chain = AuditChain(client)
        return (await chain.verify()).ok, [record async for record in chain.records()]
    finally:
        await client.aclose()


def redis_now_ms(client: sync_redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_consumer_killed_after_opening_a_zone_still_closes_it_on_time(
    tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer,
) -> None:
    (tmp_path / "rules.json").write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "water", "match": {"stream": STREAM, "type": "irrigate"},
        "steps": [{"id": "open", "call": "irrigation_control", "params": {
            "zoneId": "{{ payload.zone }}", "action": "open",
            "durationS": "{{ payload.seconds }}"}}]}]}))
    register_signed_definition(tmp_path, redis_server.url)
    with DeviceThread() as device:
        # The survivor runs already: a process start on a loaded machine is not the
        # sweeper's lateness.
        second = consumer("second", tmp_path, redis_server.url, device, stream="other")
        first: ConnectorProcess | None = None
        try:
            second.wait_for("consumer_started", timeout_s=60)
            first = consumer("first", tmp_path, redis_server.url, device)
            first.wait_for("consumer_started", timeout_s=60)
            sync.xadd(STREAM, {"event": orjson.dumps({
                "type": "irrigate", "source": "scheduler",
                "payload": {"zone": "Z-02", "seconds": DURATION_S}}).decode()})
            wait_until(lambda: device.values["coil"][COIL] == 1, timeout_s=30)
            first.process.send_signal(signal.SIGKILL)
            first.wait()
            due_ms = int(sync.zscore(CLOSES_KEY, "Z-02"))
            assert redis_now_ms(sync) < due_ms  # killed before its close was due
            wait_until(lambda: device.values["coil"][COIL] == 0, timeout_s=DURATION_S + 30)
            closed_ms = redis_now_ms(sync)
            time.sleep(0.5)  # a late re-open would show by now
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            second.close()
            if first is not None:
                first.close()

    assert due_ms <= closed_ms <= due_ms + LATE_MARGIN_MS, (closed_ms - due_ms)
    assert device.values["coil"][COIL] == 0
    assert sync.zcard(CLOSES_KEY) == 0
    commands = [values[0] for table, address, values in device.writes
                if (table, address) == ("coil", COIL)]
    assert commands == [1, 0]  # opened once, closed once by the survivor
    [closed] = [e for e in second.events() if e.get("event") == "irrigation_closed"]
    assert closed["zone"] == "Z-02" and closed["due_ms"] == due_ms
    intact, records = asyncio.run(audit_of(redis_server.url))
    assert intact
    assert records[-1].kind == "scheduled_close" and records[-1].body["ok"] is True
    assert (records[-1].body["zoneId"], records[-1].body["dueMs"]) == ("Z-02", due_ms)


def test_a_bad_plant_configuration_stops_the_consumer_at_start_naming_it(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    (tmp_path / "rules.json").write_bytes(orjson.dumps({"version": 1, "rules": []}))
    process = ConnectorProcess(
        "bad-plant", redis_url=redis_server.url,
        config=write_config(tmp_path / "connectors.json"), log=tmp_path / "bad.log",
        env={"PLANT_CONFIG_JSON": '{"zones": {"Z-01": {"device": "nowhere", '
                                  '"valve": {"coil": 1}, "maxDurationS": 60}}}'},
        command=("connector-fleet", "consume", "--rules", str(tmp_path / "rules.json"),
                 "--stream", STREAM))
    try:
        assert process.wait(60) == 78
    finally:
        process.close()
    log = (tmp_path / "bad.log").read_text()
    assert "PLANT_CONFIG_JSON: field (root): Value error, zone Z-01: device 'nowhere'" in log
