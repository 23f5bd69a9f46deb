"""kill -9 of a ``connector-fleet consume`` process in the middle of its batches (entries
run back to back on its worker tasks, acknowledged in batched XACKs): nothing is lost,
and each event's emit, atomic with its step record, happens exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.process import ConnectorProcess

pytestmark = pytest.mark.slow  # real processes and a restart

STREAM = "batch-in"
OUT = "batch-out"
GROUP = "batchers"
EVENTS = 3_000


def _consumer(name: str, tmp_path: Path, rules: Path, url: str) -> ConnectorProcess:
    return ConnectorProcess(
        name, redis_url=url, config=tmp_path / "connectors.json",
        log=tmp_path / f"{name}.log",
        env={"TEST_RULES_PATH": str(rules), "PYTHONPATH": str(REPO_ROOT)},
        command=("connector-fleet", "consume", "--stream", STREAM, "--group", GROUP,
                 "--consumer", name, "--start-id", "0", "--claim-idle-ms", "1000",
                 "--max-in-flight", "64", "--handler", "tests.consumer_handlers:rules"))


def test_kill_9_mid_batch_loses_nothing_and_emits_each_event_once(
    tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer,
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "forward", "match": {"stream": STREAM, "type": "tick"},
        "steps": [{"id": "out", "emit": {"stream": OUT, "event": {
            "type": "forwarded", "payload": {"n": "{{ payload.n }}"}}}}],
    }]}))
    with sync.pipeline(transaction=False) as pipe:
        for n in range(EVENTS):
            pipe.xadd(STREAM, {"event": orjson.dumps(
                {"type": "tick", "source": "test", "payload": {"n": n}})})
        pipe.execute()

    first = _consumer("first", tmp_path, rules, redis_server.url)
    second: ConnectorProcess | None = None
    try:
        # Killed while it still has most of the stream to go, with batches in flight.
        wait_until(lambda: sync.xlen(OUT) >= 300, timeout_s=60)
        first.process.send_signal(signal.SIGKILL)
        first.wait()
        assert sync.xlen(OUT) < EVENTS  # it died mid-run, not after the end

        second = _consumer("second", tmp_path, rules, redis_server.url)
        wait_until(lambda: sync.xlen(OUT) >= EVENTS, timeout_s=120)
        wait_until(lambda: sync.xpending(STREAM, GROUP)["pending"] == 0, timeout_s=60)
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        first.close()
        if second is not None:
            second.close()

    [group] = sync.xinfo_groups(STREAM)
    assert group["lag"] == 0 and group["pending"] == 0  # every entry read and acknowledged
    forwarded = Counter(orjson.loads(fields["event"])["payload"]["n"]
                        for _, fields in sync.xrange(OUT))
    assert forwarded == Counter({n: 1 for n in range(EVENTS)})
