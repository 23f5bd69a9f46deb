"""opcua-source under kill -9: a real ``connector-run`` process subscribed to a real
asyncua server whose nodes change every 50 ms is killed again and again, anywhere in
its work. Guarantee checked: no value is appended twice (a node and its source
timestamp are the dedupe key, across processes), each node's values stay in order,
every restart reports its gap, and the value the server holds at the end (what it
"still had") is in the stream."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from framework.testing.opcua import OpcUaServer, node_id
from tests.process import ConnectorProcess, write_config

STREAM = "raw-input-signals"
NAME = "ua-kill"
NODES = [node_id(f"Tick.{index}") for index in range(5)]


@pytest.fixture
def ticking() -> Iterator[OpcUaServer]:
    with OpcUaServer(tick_ms=50, tick_nodes=len(NODES)) as server:
        yield server


def entry(server: OpcUaServer) -> dict[str, Any]:
    return {"name": NAME, "type": "opcua-source", "pollIntervalMs": 200,
            "requestTimeoutMs": 3000, "leaseTtlSeconds": 2,
            "providerConfig": {"endpoint": server.endpoint, "nodeIds": NODES,
                               "subscription": {"publishingIntervalMs": 50,
                                                "samplingIntervalMs": 0, "queueSize": 100}}}


def wait_for_growth(client: sync_redis.Redis, than: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.xlen(STREAM) <= than:
        assert time.monotonic() < deadline, f"the stream did not grow past {than}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_again_and_again_repeats_nothing_and_keeps_what_the_server_has(
    ticking: OpcUaServer, redis_server: RedisServer, tmp_path: Path,
) -> None:
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    config = write_config(tmp_path / "connectors.json", entry(ticking))
    chance = random.Random(23)
    rounds, processes = 6, []
    for number in range(rounds):
        process = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                   log=tmp_path / f"run-{number}.log")
        processes.append(process)
        process.wait_for("push_source_started", timeout_s=60)
        wait_for_growth(client, client.xlen(STREAM), timeout_s=30)
        time.sleep(chance.uniform(0.0, 1.5))  # receiving, appending, between windows
        process.signal(signal.SIGKILL)
        process.close()
        client.delete(f"lease:{NAME}")  # its TTL would free it; no need to wait

    # The server stops changing: the value it keeps is the one the last run must publish.
    ticking.stop()
    final = json.loads((ticking.dir / "tick.json").read_text())["count"]
    ticking.tick_ms = 0
    ticking.start()
    last = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                            log=tmp_path / "run-last.log")
    processes.append(last)
    try:
        deadline = time.monotonic() + 60
        while not all(final in values for values in _published(client).values()):
            assert time.monotonic() < deadline, f"the final value {final} never came"
            time.sleep(0.1)
    finally:
        last.signal(signal.SIGTERM)
        last.wait()
        last.close()

    ids = [fields["item_id"] for _, fields in client.xrange(STREAM)]
    assert len(ids) == len(set(ids)), "a value was appended twice"
    published = _published(client)
    assert set(published) == set(NODES)
    for node, values in published.items():
        assert values == sorted(set(values)), node  # in order, never twice
        assert values[-1] == final, node
    for process in processes[1:]:  # each later run knew where the last one stopped
        gaps = [e for e in process.events() if e.get("event") == "opcua_gap"]
        assert gaps and gaps[0]["reason"] == "connector restarted", process.log_path
    client.close()


def _published(client: sync_redis.Redis) -> dict[str, list[int]]:
    published: dict[str, list[int]] = {}
    for _, fields in client.xrange(STREAM):
        event = orjson.loads(fields["payload"])
        published.setdefault(event["nodeId"], []).append(event["value"])
    return published
