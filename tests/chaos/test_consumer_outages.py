"""The consumer survives Redis outages: work finished while Redis is down is
acknowledged once it is back, and reading resumes; nothing runs twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from framework.consuming.consumer import Consumer, ConsumerOptions
from framework.consuming.delivery import Delivery
from framework.core.clock import SystemClock
from framework.core.connections import create_redis
from framework.core.logs import get_logger
from framework.testing import RedisServer
from tests.consuming.test_consumer import GROUP, STREAM, Recorder, Recording, until


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    with RedisServer(persistence=True) as server:
        yield server


async def test_outage_while_work_is_in_flight_loses_and_repeats_nothing(
    durable_redis: RedisServer,
) -> None:
    release = asyncio.Event()

    async def wait(_: Delivery) -> None:
        await release.wait()

    redis = create_redis(durable_redis.url)
    recorder = Recorder(wait)
    first = [str(await redis.xadd(STREAM, {"n": str(i)})) for i in range(2)]
    consumer = Consumer(redis, recorder, ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50),
        clock=SystemClock(), logger=get_logger())
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(recorder.calls) == 2)
        durable_redis.stop()
        release.set()  # the work completes while Redis is down: the acks must wait
        await until(lambda: len(recorder.finished) == 2)
        await asyncio.sleep(0.5)
        durable_redis.start()

        later = str(await redis.xadd(STREAM, {"n": "later"}))
        await until(lambda: len(recorder.finished) == 3, timeout_s=20)
        await until(lambda: _nothing_pending(redis), timeout_s=20)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
        await redis.aclose()
    assert sorted(recorder.ids()) == sorted([*first, later])
    assert len(recorder.calls) == 3  # nothing ran twice


async def _nothing_pending(redis: Redis) -> bool:
    info = await redis.xpending(STREAM, GROUP)
    return int(info["pending"]) == 0


async def test_a_forced_stop_still_lands_the_acknowledgement_of_finished_work(
    durable_redis: RedisServer,
) -> None:
    redis = create_redis(durable_redis.url)
    entry_id = str(await redis.xadd(STREAM, {"n": "0"}))
    loop = asyncio.get_running_loop()
    consumer: Consumer | None = None

    def stop_at_once_while_redis_is_down() -> None:  # the work is done, not acknowledged
        assert consumer is not None
        durable_redis.stop()
        loop.call_later(0.3, durable_redis.start)
        consumer.stop()
        consumer.stop()

    consumer = Consumer(redis, Recording(stop_at_once_while_redis_is_down), ConsumerOptions(
        streams=(STREAM,), group=GROUP, consumer="c1", start_id="0", block_ms=50),
        clock=SystemClock(), logger=get_logger())
    try:
        await asyncio.wait_for(consumer.run(), timeout=10)
        assert consumer.stopped_by_force
        assert await _nothing_pending(redis)  # acknowledged once Redis was back...
        assert await redis.hget(f"done:{entry_id}", "step") == f"result of {entry_id}"
    finally:
        await redis.aclose()
