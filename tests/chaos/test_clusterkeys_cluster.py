"""Connectors on a real 3-master Redis Cluster: without hash tags a commit is refused
(CROSSSLOT); with them every polling script touches one slot, commits publish to the
connector's stream shard, and the fence still holds."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from framework.core import ConfigError, KeyScheme, LeaseLostError, get_logger, lua
from framework.polling import (
    ConnectorConfig,
    ConnectorRegistry,
    DedupeWindow,
    FleetConfig,
    Lease,
    Message,
    MetricsRecorder,
    PrometheusMetrics,
    Rejected,
    StateStore,
)
from framework.polling.poller import FetchResult, SourceParts, UniversalPollingConnector
from framework.polling.state import Change
from framework.testing import FakeClock
from tests.helpers import ManualClock
from worker.connector import ConnectorWorker
from worker.connector.setup import ConnectorSetup
from worker.exit_codes import ExitCode
from worker.runtime import Runtime

TAGGED = KeyScheme(tagged=True)
LUA_DIR = Path(__file__).parents[2] / "framework" / "polling" / "lua"


def connector(name: str, **fields: Any) -> ConnectorConfig:
    return ConnectorConfig.model_validate(
        {"name": name, "type": "T", "outputStream": "signals", **fields}
    )


async def commit_one(
    redis: Any, config: ConnectorConfig, scheme: KeyScheme, *items: str
) -> tuple[Lease, StateStore]:
    lease = Lease(redis, config.name, ttl_s=30, key=config.keys(scheme).lease)
    assert await lease.try_acquire()
    store = StateStore(redis, config, lease, clock=ManualClock(), scheme=scheme)
    state = await store.load()
    await store.commit(
        state, [Change(i, "v1", b'{"id": "%s"}' % i.encode()) for i in items], etag="e1"
    )
    return lease, store


async def test_untagged_keys_are_refused_by_the_cluster_crossslot(cluster: Any) -> None:
    config = connector("weather")
    keys = config.keys(KeyScheme()).commit_keys
    commit = cluster.register_script(lua("framework.polling", "commit"))

    with pytest.raises(RedisClusterException, match="same key slot"):
        await commit(keys=keys, args=["token", "", 100, "weather", "T", 0, 0])


async def test_tags_without_shards_refuse_the_shared_stream_before_any_commit(
    cluster: Any,
) -> None:
    config = connector("weather")
    lease = Lease(cluster, "weather", ttl_s=30, key=config.keys(TAGGED).lease)

    with pytest.raises(ConfigError, match="connector weather: its commit keys hash to"):
        StateStore(cluster, config, lease, clock=ManualClock(), scheme=TAGGED)


async def test_commits_of_sharded_connectors_publish_to_their_shards_on_the_cluster(
    cluster: Any,
) -> None:
    configs = [connector(f"source-{i}", outputShards=3) for i in range(8)]

    for config in configs:
        await commit_one(cluster, config, TAGGED, f"{config.name}-a", f"{config.name}-b")

    streams = TAGGED.shard_streams("signals", 3)
    published = {s: [f["item_id"] for _, f in await cluster.xrange(s)] for s in streams}
    for config in configs:
        shard = config.keys(TAGGED).output_stream
        assert [i for i in published[shard] if i.startswith(config.name + "-")] == [
            f"{config.name}-a",
            f"{config.name}-b",
        ]
        assert await cluster.hgetall(config.keys(TAGGED).versions) == {
            f"{config.name}-a": "v1",
            f"{config.name}-b": "v1",
        }
    nodes = {cluster.get_node_from_key(stream).port for stream in streams}
    assert len(nodes) >= 2  # the shards spread over the masters


async def test_the_fence_holds_on_the_cluster(cluster: Any) -> None:
    config = connector("weather", outputShards=2)
    lease, store = await commit_one(cluster, config, TAGGED, "a")
    await cluster.set(lease.key, "someone-else")

    with pytest.raises(LeaseLostError, match="held by someone-else"):
        await store.commit(await store.load(), [Change("b", "v1", b"{}")])

    stream = config.keys(TAGGED).output_stream
    assert [f["item_id"] for _, f in await cluster.xrange(stream)] == ["a"]


# -- every polling script is single-slot -----------------------------------------------------


def script_names() -> dict[str, str]:
    """sha1 -> name of every Lua script of the polling side."""
    return {
        hashlib.sha1(lua("framework.polling", path.stem).encode()).hexdigest(): path.stem
        for path in LUA_DIR.glob("*.lua")
    }


async def scripts_called(redis: Redis, run: Any) -> list[tuple[str, list[str]]]:
    """(script name, KEYS) of every EVALSHA/EVAL that ``run()`` sends, seen by MONITOR."""
    names, calls = script_names(), []
    marker = "clusterkeys-monitor-done"
    async with redis.monitor() as monitor:

        async def collect() -> None:
            async for info in monitor.listen():
                parts = str(info["command"]).split(" ")
                if parts[:2] == ["ECHO", marker]:
                    return
                if parts[0].upper() in ("EVALSHA", "EVAL"):
                    sha = (
                        parts[1]
                        if parts[0].upper() == "EVALSHA"
                        else hashlib.sha1(parts[1].encode()).hexdigest()
                    )
                    calls.append((names.get(sha, sha), parts[3 : 3 + int(parts[2])]))

        reader = asyncio.create_task(collect())
        await run()
        await redis.echo(marker)
        await asyncio.wait_for(reader, timeout=10)
    return calls


async def test_every_polling_script_is_called_with_keys_of_one_slot(
    redis: Redis,
    cluster: Any,
) -> None:
    async def one_connector_life() -> None:
        for config in (connector("weather", outputShards=4), connector("jira")):
            keys = config.keys(TAGGED)
            lease = Lease(redis, config.name, ttl_s=30, key=keys.lease)
            assert await lease.try_acquire() and await lease.renew()
            if config.output_shards:
                store = StateStore(redis, config, lease, clock=ManualClock(), scheme=TAGGED)
                await store.commit(await store.load(), [Change("a", "1", b"{}")])
                await store.appender(DedupeWindow()).append(
                    [Message("m", b"{}", "key")], rejected=[Rejected("r", "bad", b"?")])
            await MetricsRecorder(redis, config.name, key=keys.metrics).record_poll(
                at_s=1.0, latency_ms=2.0, summary=None
            )
            assert await lease.release()

    calls = await scripts_called(redis, one_connector_life)

    assert {name for name, _ in calls} == set(script_names().values())
    for name, keys in calls:
        assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
        cluster_slots = {await cluster.cluster_keyslot(k) for k in keys}
        assert len(cluster_slots) == 1, (name, keys, cluster_slots)


# -- a whole connector worker on the cluster -------------------------------------------------


def runtime_on(cluster: Any, fleet: Callable[[], FleetConfig]) -> Runtime:
    registry = ConnectorRegistry()
    registry.register_connector(
        "T",
        lambda config, context: UniversalPollingConnector[None, dict[str, Any], dict[str, Any]](
            config=config,
            store=context.store,
            logger=context.logger,
            parts=SourceParts(
                provider=None, fetcher=fetch_two, item_id=lambda raw: raw["id"], transformer=dict
            ),
        ),
    )
    return Runtime(
        redis=cluster,
        redis_url="redis://cluster",
        registry=registry,
        load_config=fleet,
        clock=FakeClock(),
        logger=get_logger(),
        prometheus=CollectorRegistry(),
        drain_timeout_s=5,
        keys=TAGGED,
    )


def worker_on(cluster: Any, config: ConnectorConfig) -> ConnectorWorker:
    fleet = FleetConfig(connectors={config.name: config}, source="test")
    runtime = runtime_on(cluster, lambda: fleet)
    return ConnectorWorker(
        config.name, runtime, PrometheusMetrics.create(runtime.prometheus), once=True
    )


async def fetch_two(_: Any, __: Any) -> FetchResult[dict[str, Any]]:
    return FetchResult(items=[{"id": "a"}, {"id": "b"}])


async def test_a_connector_worker_polls_commits_and_records_on_the_cluster(
    cluster: Any,
) -> None:
    config = connector("weather", outputShards=3)
    keys = config.keys(TAGGED)
    worker = worker_on(cluster, config)

    await worker.start()
    code = await worker.run()

    assert code == ExitCode.OK
    assert [f["item_id"] for _, f in await cluster.xrange(keys.output_stream)] == ["a", "b"]
    assert await cluster.hget(keys.metrics, "successfulPolls") == "1"
    assert await cluster.hlen(keys.versions) == 2
    assert not await cluster.exists(keys.lease)  # released on the way out


async def test_a_connector_worker_with_tags_but_no_shards_does_not_start(
    cluster: Any,
) -> None:
    worker = worker_on(cluster, connector("weather"))

    with pytest.raises(ConfigError, match="different Cluster slots"):
        await worker.start()


async def test_a_reload_that_would_move_the_connectors_keys_is_rejected(
    cluster: Any,
) -> None:
    configs = {"now": connector("weather", outputShards=3)}
    runtime = runtime_on(
        cluster, lambda: FleetConfig(connectors={"weather": configs["now"]}, source="t")
    )
    setup, logger = ConnectorSetup("weather", runtime, {}), get_logger()
    config = setup.load()
    lease = Lease(cluster, "weather", ttl_s=30, key=config.keys(TAGGED).lease)
    setup.build(config, lease, logger)
    configs["now"] = connector("weather", outputShards=3, outputStream="elsewhere")

    kept = await setup.reload(lease, logger)

    assert kept and setup.config.output_stream == "signals"  # the running config stays
