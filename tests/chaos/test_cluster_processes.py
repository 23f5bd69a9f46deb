"""connector-run and consume, as real processes, on a real 3-master Redis Cluster from
REDIS_URL alone (plus FLEET_REDIS_HASH_TAGS=1): the connector publishes to its stream
shard, the consumer reads every shard and its rule emits one event per published item
version into a stream of another slot, exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from framework.core import KeyScheme, SystemClock, get_logger
from framework.polling import Lease
from framework.testing import RedisCluster, ReplayServer, Reply
from tests.conftest import REPO_ROOT
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config
from worker.fleet.lease_renewals import LeaseRenewals

pytestmark = pytest.mark.slow  # a cluster and two real processes

SHARDS = KeyScheme(tagged=True).shard_streams("signals", 3)
SEEN = "{seen}"
# Their shards (crc16 of the name mod 3) are 2, 0 and 1: one connector per shard.
CONNECTORS = ("noaa-0", "noaa-1", "noaa-3")
ENV = {"FLEET_REDIS_HASH_TAGS": "1", "PYTHONPATH": str(REPO_ROOT)}


def rules() -> dict[str, Any]:
    return {"version": 1, "rules": [{
        "name": "seen", "match": {"streams": SHARDS},
        "steps": [{"id": "out", "emit": {"stream": SEEN, "event": {
            "type": "seen", "payload": {"id": "{{ event.event_id }}"}}}}]}]}


@pytest.fixture
def files(tmp_path: Path, replay: ReplayServer) -> tuple[Path, Path]:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    config = write_config(tmp_path / "connectors.json", *[
        noaa_entry(name, replay.url, pollIntervalMs=200, outputStream="signals",
                   outputShards=3) for name in CONNECTORS])
    rules_path = tmp_path / "rules.json"
    rules_path.write_bytes(orjson.dumps(rules()))
    return config, rules_path


@pytest.fixture
def client(cluster_servers: RedisCluster) -> Iterator[sync_redis.RedisCluster]:
    seed = sync_redis.RedisCluster(host="127.0.0.1", port=cluster_servers.nodes[0].port,
                                   decode_responses=True)
    seed.flushall(target_nodes=sync_redis.RedisCluster.PRIMARIES)
    yield seed
    seed.close()


def published(client: sync_redis.RedisCluster) -> list[str]:
    return sorted(f"{f['connector']}:{f['item_id']}:{f['version']}"
                  for shard in SHARDS for _, f in client.xrange(shard))


def emitted(client: sync_redis.RedisCluster) -> list[str]:
    return sorted(orjson.loads(f["event"])["payload"]["id"] for _, f in client.xrange(SEEN))


@pytest.mark.parametrize("fleet", ["connector-run", "run-all --in-process"])
def test_connectors_and_a_consumer_run_end_to_end_on_the_cluster(
    tmp_path: Path, cluster_servers: RedisCluster, files: tuple[Path, Path],
    client: sync_redis.RedisCluster, fleet: str,
) -> None:
    config, rules_path = files
    env = {**ENV, "RULES_PATH": str(rules_path)}
    commands = ([("connector-run", name) for name in CONNECTORS] if fleet == "connector-run"
                else [("connector-fleet", "run-all", "--in-process")])
    connectors = [ConnectorProcess(
        "", redis_url=cluster_servers.url, config=config, log=tmp_path / f"fleet{i}.log",
        command=command, env=env) for i, command in enumerate(commands)]
    consumer = ConnectorProcess(
        "", redis_url=cluster_servers.url, config=config, log=tmp_path / "consume.log",
        command=("connector-fleet", "consume", "--group", "g", "--consumer", "c1",
                 "--start-id", "0"), env=env)
    processes = [*connectors, consumer]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(published(client)) < 30:
            time.sleep(0.2)
        for process in connectors:
            process.signal(signal.SIGTERM)
        assert [process.wait(30) for process in connectors] == [0] * len(connectors)
        items = published(client)
        while time.monotonic() < deadline and len(emitted(client)) < len(items):
            time.sleep(0.2)

        assert len(items) >= 30 and len(set(items)) == len(items)
        assert emitted(client) == items  # each published item version, once
        assert all(client.xlen(shard) for shard in SHARDS)
        for process in processes:
            assert "Traceback" not in process.log_path.read_text(errors="replace")
    finally:
        for process in processes:
            process.close()


@pytest.mark.slow  # waits 2.5 lease TTLs
async def test_the_in_process_fleets_renewal_thread_keeps_leases_on_the_cluster(
    cluster_servers: RedisCluster, cluster: Any,
) -> None:
    # A cluster client pipelines no script: the thread renews each lease on its own.
    renewals = LeaseRenewals(cluster_servers.url, clock=SystemClock(), logger=get_logger())
    renewals.start()
    tagged = KeyScheme(tagged=True)
    leases = [Lease(cluster, name, ttl_s=0.6, key=tagged.connector(name).lease)
              for name in CONNECTORS]
    lost: asyncio.Queue[str] = asyncio.Queue()
    try:
        for lease in leases:
            assert await lease.try_acquire()
            renewals.keep(lease, lost.put_nowait)
        await asyncio.sleep(1.5)  # 2.5 TTLs: gone by now unless renewed
        assert [await cluster.get(lease.key) for lease in leases] == [
            lease.token for lease in leases]
        assert lost.empty()

        await cluster.set(leases[1].key, "another-instance", px=5000)
        assert await asyncio.wait_for(lost.get(), timeout=2) == "lease_lost"
    finally:
        await asyncio.to_thread(renewals.close)
