"""Stream retention (issue 15): trimming removes what every group has acknowledged and
never an entry some group has not, whatever the groups are doing: a group far behind,
a consumer that crashed holding entries, a group created at an old id, a stream nobody
consumes. Real Redis; ``connector-fleet streams trim`` run as the installed command is."""

from __future__ import annotations

import asyncio
import contextlib
import random

import orjson
import pytest
import redis as sync_redis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming import RetentionMetrics, StreamRetention
from framework.core.logs import get_logger
from framework.testing import RedisServer
from tests.cli import FleetCli

STREAM = "signals"


def retention(
    redis: Redis, *, max_len: int = 0, metrics: RetentionMetrics | None = None
) -> StreamRetention:
    return StreamRetention(
        redis, max_len=max_len, logger=get_logger(test="retention"), metrics=metrics
    )


async def add(redis: Redis, count: int) -> list[str]:
    return [await redis.xadd(STREAM, {"n": str(i)}) for i in range(count)]


async def read(redis: Redis, group: str, consumer: str, count: int) -> list[str]:
    if count == 0:
        return []
    reply = await redis.xreadgroup(group, consumer, {STREAM: ">"}, count=count)
    return [entry_id for _, entries in reply for entry_id, _ in entries]


async def unacknowledged(redis: Redis, group: str) -> set[str]:
    """Entries the group has not acknowledged: pending, or not delivered yet."""
    [info] = [g for g in await redis.xinfo_groups(STREAM) if g["name"] == group]
    rows = await redis.xpending_range(STREAM, group, "-", "+", 10_000)
    undelivered = await redis.xrange(STREAM, f"({info['last-delivered-id']}", "+")
    return {str(r["message_id"]) for r in rows} | {entry_id for entry_id, _ in undelivered}


async def remaining(redis: Redis) -> set[str]:
    return {entry_id for entry_id, _ in await redis.xrange(STREAM)}


async def test_only_entries_every_group_acknowledged_are_trimmed(redis: Redis) -> None:
    ids = await add(redis, 10)
    await redis.xgroup_create(STREAM, "fast", id="0")
    await redis.xgroup_create(STREAM, "slow", id="0")
    fast = await read(redis, "fast", "f1", 10)
    await redis.xack(STREAM, "fast", *fast)
    slow = await read(redis, "slow", "s1", 6)  # read 6: 4 never delivered yet
    await redis.xack(STREAM, "slow", *slow[:2], *slow[3:])  # ids[2] stays pending
    metrics = RetentionMetrics.create(CollectorRegistry())

    trimmed = await retention(redis, metrics=metrics).trim(STREAM)

    assert (trimmed.acknowledged, trimmed.capped, trimmed.min_id) == (2, 0, ids[2])
    assert await remaining(redis) == set(ids[2:])
    assert metrics.trimmed.labels(STREAM, "acknowledged")._value.get() == 2
    # The crashed consumer's pending entry is acknowledged at last: the rest up to the
    # last delivered one go, the undelivered ones stay.
    await redis.xack(STREAM, "slow", ids[2])
    assert (await retention(redis).trim(STREAM)).acknowledged == 4
    assert await remaining(redis) == set(ids[6:])


async def test_random_group_activity_never_loses_an_unacknowledged_entry(
    redis: Redis,
) -> None:
    rng = random.Random(15)
    await add(redis, 5)
    groups = ["a", "b", "c"]
    for group in groups:
        await redis.xgroup_create(STREAM, group, id="0")
    trimmer = retention(redis)
    total = 0
    for _ in range(60):
        await add(redis, rng.randint(0, 5))
        for group in groups:
            delivered = await read(redis, group, f"{group}-1", rng.randint(0, 6))
            # Acknowledge some, in any order; the others stay pending (a crash).
            acked = [i for i in delivered if rng.random() < 0.7]
            if acked:
                await redis.xack(STREAM, group, *acked)
            if rng.random() < 0.3:  # a late acknowledgement of an old pending entry
                rows = await redis.xpending_range(STREAM, group, "-", "+", 50)
                if rows:
                    await redis.xack(STREAM, group, rng.choice(rows)["message_id"])
        needed = set().union(*[await unacknowledged(redis, g) for g in groups])
        before = await remaining(redis)
        total += (await trimmer.trim(STREAM)).acknowledged
        assert needed & before <= await remaining(redis)
    assert total > 0  # it did trim: a trimmer that never trims would pass the rest


async def test_a_group_created_at_an_old_id_keeps_everything_after_it(redis: Redis) -> None:
    ids = await add(redis, 6)
    await redis.xgroup_create(STREAM, "done", id="$")  # everything before it is not its
    await redis.xgroup_create(STREAM, "rewound", id=ids[3])
    trimmed = await retention(redis).trim(STREAM)
    assert trimmed.acknowledged == 4  # ids[0..3]: at or before where "rewound" starts
    assert await remaining(redis) == set(ids[4:])


async def test_a_stream_without_group_is_only_capped_and_a_missing_one_is_no_error(
    redis: Redis,
) -> None:
    ids = await add(redis, 8)
    assert (await retention(redis).trim(STREAM)).acknowledged == 0
    assert await remaining(redis) == set(ids)
    metrics = RetentionMetrics.create(CollectorRegistry())
    trimmed = await retention(redis, max_len=5, metrics=metrics).trim(STREAM)
    assert (trimmed.acknowledged, trimmed.capped, trimmed.min_id) == (0, 3, None)
    assert await remaining(redis) == set(ids[3:])
    assert metrics.trimmed.labels(STREAM, "max_len")._value.get() == 3
    assert (await retention(redis).trim("never-written")).min_id is None


async def test_trimming_runs_periodically_and_a_failure_spares_the_other_streams(
    redis: Redis,
) -> None:
    await redis.set("not-a-stream", "x")  # WRONGTYPE: logged, the next stream still trims
    ids = await add(redis, 3)
    await redis.xgroup_create(STREAM, "g", id="$")

    class Clock:
        rounds = 0

        async def sleep(self, seconds: float) -> None:
            self.rounds += 1
            await asyncio.sleep(0)

        def time(self) -> float:
            return 0.0

        def monotonic(self) -> float:
            return 0.0

    clock = Clock()
    task = asyncio.create_task(
        retention(redis).run(["not-a-stream", STREAM], interval_s=60, clock=clock)
    )
    async with asyncio.timeout(5):
        while True:
            if clock.rounds >= 2:
                break
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await remaining(redis) == set()
    assert len(ids) == 3


def test_streams_trim_command_trims_each_stream_and_names_a_bad_one(
    sync: sync_redis.Redis,
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli = FleetCli(capsys, monkeypatch, {"REDIS_URL": redis_server.url})
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(5)]
    sync.xgroup_create(STREAM, "g", id="0")
    read = sync.xreadgroup("g", "c", {STREAM: ">"}, count=3)
    sync.xack(STREAM, "g", *[i for _, entries in read for i, _ in entries][:2])
    sync.set("not-a-stream", "x")

    run = cli("streams", "trim", "not-a-stream", STREAM, "--json")

    assert run.returncode == 1
    assert "streams trim not-a-stream: WRONGTYPE" in run.stderr
    assert orjson.loads(run.stdout) == [
        {"stream": STREAM, "acknowledged": 2, "capped": 0, "minId": ids[2]}
    ]
    assert [i for i, _ in sync.xrange(STREAM)] == ids[2:]
    capped = cli("streams", "trim", STREAM, "--max-len", "1")
    assert capped.returncode == 0 and "no group" not in capped.stdout
    assert sync.xlen(STREAM) == 1
