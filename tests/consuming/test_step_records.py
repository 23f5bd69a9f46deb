"""StepRecords: batched reads and writes of completed steps, on a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from framework.consuming.rules.step_records import StepRecords
from framework.testing import free_port


async def test_records_written_together_are_each_readable_with_their_ttl(redis: Redis) -> None:
    records = StepRecords(redis, ttl_s=600)
    await asyncio.gather(*(records.record(f"steps:{i}", f"rule:s{j}", f'{{"i":{i},"j":{j}}}')
                           for i in range(30) for j in range(2)))
    found = await asyncio.gather(*(records.completed(f"steps:{i}") for i in range(31)))
    for i in range(30):
        assert found[i] == {"rule:s0": f'{{"i":{i},"j":0}}', "rule:s1": f'{{"i":{i},"j":1}}'}
        assert 0 < await redis.ttl(f"steps:{i}") <= 600
    assert found[30] == {}  # never recorded


async def test_a_failed_round_trip_fails_every_caller_in_it() -> None:
    down = Redis(port=free_port(), decode_responses=True, socket_connect_timeout=1,
                 retry=Retry(NoBackoff(), 0))
    records = StepRecords(down, ttl_s=60)
    try:
        results = await asyncio.gather(records.record("k1", "r:s", "{}"),
                                       records.record("k2", "r:s", "{}"),
                                       records.completed("k3"), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        with pytest.raises(RedisConnectionError):  # the next call tries again, and fails too
            await records.record("k1", "r:s", "{}")
    finally:
        await down.aclose()


async def test_a_cancelled_caller_does_not_stop_the_others(redis: Redis) -> None:
    records = StepRecords(redis, ttl_s=60)
    cancelled = asyncio.create_task(records.record("gone", "r:s", '"x"'))
    kept = asyncio.create_task(records.record("kept", "r:s", '"y"'))
    await asyncio.sleep(0)
    cancelled.cancel()
    await kept
    assert await redis.hget("kept", "r:s") == '"y"'
    assert cancelled.cancelled()
