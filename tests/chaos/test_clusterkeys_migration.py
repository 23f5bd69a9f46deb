"""``migrate-keys`` (framework.polling.key_migration) on real Redis: from a single
server's layout to the Cluster's hash-tagged one, stopped midway and rerun, with
conflicts and live leases left alone."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import KeyScheme
from framework.polling import ConnectorConfig, KeyMove, Migration, MoveOutcome, StateStore
from framework.polling.lease import Lease
from framework.polling.state import Change
from tests.helpers import ManualClock

UNTAGGED, TAGGED = KeyScheme(), KeyScheme(tagged=True)


class Killed(Exception):
    """Stands for the process dying after some keys (each step is one command, so
    what Redis holds is the same as after a SIGKILL at that point)."""


def connectors(count: int) -> list[ConnectorConfig]:
    return [
        ConnectorConfig.model_validate({"name": f"c{i}", "type": "T", "outputShards": 3})
        for i in range(count)
    ]


async def seed(redis: Any, configs: list[ConnectorConfig]) -> dict[str, Any]:
    """The single-server layout of each connector; what each key holds."""
    expected: dict[str, Any] = {}
    for config in configs:
        keys = config.keys(UNTAGGED)
        await redis.hset(keys.state, mapping={"generation": "7", "etag": f"e-{config.name}"})
        await redis.hset(keys.versions, mapping={"x": "1", f"y-{config.name}": "2"})
        await redis.hset(keys.metrics, mapping={"totalPolls": "3"})
        await redis.expire(keys.metrics, 3600)
        expected[config.name] = {"generation": "7", "etag": f"e-{config.name}"}
    return expected


def stop_after(count: int) -> Any:
    seen: list[KeyMove] = []

    async def on_key(move: KeyMove, outcome: MoveOutcome) -> None:
        seen.append(move)
        if len(seen) == count:
            raise Killed

    return on_key


async def assert_migrated(source: Any, target: Any, configs: list[ConnectorConfig]) -> None:
    for config in configs:
        old, new = config.keys(UNTAGGED), config.keys(TAGGED)
        assert not await source.exists(old.state, old.versions, old.metrics), config.name
        assert await target.hgetall(new.state) == {"generation": "7", "etag": f"e-{config.name}"}
        assert await target.hgetall(new.versions) == {"x": "1", f"y-{config.name}": "2"}
        assert 0 < await target.ttl(new.metrics) <= 3600  # the TTL moved with the key


async def test_a_single_server_layout_moves_to_the_cluster_stopped_midway_and_rerun(
    redis: Redis,
    cluster: Any,
) -> None:
    configs = connectors(12)
    await seed(redis, configs)
    killed = Migration(
        source=redis, target=cluster, from_scheme=UNTAGGED, to_scheme=TAGGED, on_key=stop_after(10)
    )

    with pytest.raises(Killed):
        await killed.run(configs)
    partial = await cluster.exists(*[c.keys(TAGGED).state for c in configs])
    rerun = await Migration(redis, cluster, UNTAGGED, TAGGED).run(configs)
    again = await Migration(redis, cluster, UNTAGGED, TAGGED).run(configs)

    assert 0 < partial < len(configs)
    assert rerun.ok and rerun.count("moved") == 3 * 12 - 10 and rerun.count("absent") == 10
    assert again.ok and again.count("absent") == 3 * 12 and again.count("moved") == 0
    await assert_migrated(redis, cluster, configs)


async def test_the_migrated_state_is_the_connectors_state_under_tags(cluster: Any) -> None:
    configs = connectors(1)
    await seed(cluster, configs)  # imported as is into the cluster (redis-cli --cluster import)
    await Migration(cluster, cluster, UNTAGGED, TAGGED).run(configs)
    config = configs[0]
    lease = Lease(cluster, config.name, ttl_s=30, key=config.keys(TAGGED).lease)
    assert await lease.try_acquire()
    store = StateStore(cluster, config, lease, clock=ManualClock(), scheme=TAGGED)

    state = await store.load()
    known = dict(state.item_versions)
    await store.commit(state, [Change("z", "1", b"{}")])  # on top of generation 7: no conflict

    assert state.generation == "7" and state.etag == "e-c0"
    assert known == {"x": "1", "y-c0": "2"}
    assert await cluster.hget(config.keys(TAGGED).state, "generation") == "8"


async def test_a_run_killed_between_copy_and_delete_is_finished_by_the_next(
    cluster: Any,
) -> None:
    configs = connectors(3)
    await seed(cluster, configs)
    half = configs[1].keys(UNTAGGED).versions, configs[1].keys(TAGGED).versions
    await cluster.restore(half[1], 0, await cluster.dump(half[0]))  # copied, not yet deleted

    report = await Migration(cluster, cluster, UNTAGGED, TAGGED).run(configs)

    assert report.ok and report.count("finished") == 1 and report.count("moved") == 8
    await assert_migrated(cluster, cluster, configs)


async def test_a_conflict_and_a_live_lease_stop_only_their_connector(cluster: Any) -> None:
    configs = connectors(4)
    await seed(cluster, configs)
    conflicting = configs[0].keys(TAGGED).state
    await cluster.hset(conflicting, mapping={"generation": "99"})
    await cluster.set(configs[1].keys(UNTAGGED).lease, "host-a:1:live", ex=30)

    report = await Migration(cluster, cluster, UNTAGGED, TAGGED).run(configs)

    assert not report.ok and report.count("conflict") == 1
    assert "connector c1: its lease is held (host-a:1:live)" in report.refused["c1"]
    assert await cluster.hget(conflicting, "generation") == "99"  # never overwritten
    assert await cluster.exists(configs[0].keys(UNTAGGED).state)  # kept for the operator
    assert await cluster.exists(configs[1].keys(UNTAGGED).state)
    await assert_migrated(cluster, cluster, configs[2:])
