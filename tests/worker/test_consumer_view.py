"""What operators see of consumer groups, and the safe pruning of dead consumers."""

from __future__ import annotations

import io

import orjson
from redis.asyncio import Redis

from worker.cli.consumers import prune_consumers, show_consumers
from worker.cli.output import Console
from worker.ops import read_consumer_groups

STREAM = "events"
GROUP = "workers"


async def three_consumers(redis: Redis) -> None:
    """holding: 2 pending; empty: none; alive: none but a live heartbeat. Lag 1."""
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for i in range(3):
        await redis.xadd(STREAM, {"n": str(i)})
    await redis.xreadgroup(GROUP, "holding", {STREAM: ">"}, count=2)
    await redis.xadd("other", {"n": "x"})
    await redis.xgroup_create("other", GROUP, id="$")
    for name in ("empty", "alive"):
        await redis.xreadgroup(GROUP, name, {"other": ">"})  # creates the consumer
        await redis.xgroup_createconsumer(STREAM, GROUP, name)
    await redis.set(f"fleet:consumers:{GROUP}:alive", orjson.dumps({"inFlight": 0}), px=60_000)


async def test_groups_show_pending_lag_and_live_consumers(redis: Redis) -> None:
    await three_consumers(redis)
    [group] = await read_consumer_groups(redis, streams=[STREAM])
    assert (group.stream, group.name, group.pending, group.lag) == (STREAM, GROUP, 2, 1)
    consumers = {c.name: c for c in group.consumers}
    assert consumers["holding"].pending == 2 and not consumers["holding"].alive
    assert consumers["alive"].alive and consumers["alive"].in_flight == 0

    out = io.StringIO()
    assert await show_consumers(redis, Console(out=out), streams=None, as_json=True) == 0
    listed = orjson.loads(out.getvalue())
    assert {(g["stream"], g["group"]) for g in listed} == {(STREAM, GROUP), ("other", GROUP)}


async def test_prune_removes_only_dead_consumers_without_pending_entries(redis: Redis) -> None:
    await three_consumers(redis)
    out, err = io.StringIO(), io.StringIO()
    refused = await prune_consumers(redis, Console(out=out, err=err), idle_ms=0,
                                    confirm=lambda _: False)
    assert refused == 1 and "not pruned" in err.getvalue()

    assert await prune_consumers(redis, Console(out=out, err=err), idle_ms=0,
                                 confirm=lambda _: True) == 0

    remaining = {c["name"] for c in await redis.xinfo_consumers(STREAM, GROUP)}
    assert remaining == {"holding", "alive"}
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 2
    assert f"removed {STREAM}/{GROUP}/empty" in out.getvalue()


async def test_prune_keeps_consumers_active_more_recently_than_the_threshold(
    redis: Redis,
) -> None:
    await three_consumers(redis)
    out = io.StringIO()
    assert await prune_consumers(redis, Console(out=out), idle_ms=3_600_000,
                                 confirm=lambda _: True) == 0
    assert "no consumer to prune" in out.getvalue()
    assert len(await redis.xinfo_consumers(STREAM, GROUP)) == 3
