"""ResourceArbiter and FencingGuard on a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import PermitTimeoutError, StaleFencingTokenError
from framework.core.keys import permit_keys
from framework.core.logs import get_logger
from framework.trust.arbiter import FencingGuard, ResourceArbiter, permit_wait_histogram


def arbiter_on(redis: Redis, **options: Any) -> ResourceArbiter:
    return ResourceArbiter(redis, clock=SystemClock(), logger=get_logger(test="arbiter"),
                           **options)


async def test_racing_holders_are_serialized_with_increasing_tokens(redis: Redis) -> None:
    arbiter = arbiter_on(redis, ttl_s=5, poll_interval_s=0.01)
    inside = 0
    most_inside = 0
    tokens: list[int] = []

    async def drive() -> None:
        nonlocal inside, most_inside
        async with arbiter.permit("valve:V-01", wait_timeout_s=10) as held:
            inside += 1
            most_inside = max(most_inside, inside)
            tokens.append(held.fencing_token)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*(drive() for _ in range(6)))
    assert most_inside == 1
    assert tokens == sorted(tokens)
    assert sorted(tokens) == list(range(1, 7))


async def test_shared_resource_admits_max_holders(redis: Redis) -> None:
    arbiter = arbiter_on(redis, ttl_s=5)
    async with (
        arbiter.permit("pump:P-1", max_holders=2, wait_timeout_s=1) as first,
        arbiter.permit("pump:P-1", max_holders=2, wait_timeout_s=1) as second,
    ):
        assert first.fencing_token != second.fencing_token
        assert set(await arbiter.holders("pump:P-1")) == {first.holder, second.holder}
        with pytest.raises(PermitTimeoutError, match="pump:P-1"):
            await arbiter.acquire("pump:P-1", max_holders=2, wait_timeout_s=0.1)
    assert await arbiter.holders("pump:P-1") == {}


async def test_wait_timeout_names_the_resource_and_is_measured(redis: Redis) -> None:
    registry = CollectorRegistry()
    arbiter = arbiter_on(redis, wait_histogram=permit_wait_histogram(registry))
    async with arbiter.permit("valve:V-01"):
        with pytest.raises(PermitTimeoutError, match=r"resource valve:V-01: no permit free"):
            await arbiter.acquire("valve:V-01", wait_timeout_s=0.1)
    labels = {"resource_kind": "valve"}
    granted = registry.get_sample_value(
        "connector_permit_wait_seconds_count", {**labels, "outcome": "granted"})
    timed_out = registry.get_sample_value(
        "connector_permit_wait_seconds_count", {**labels, "outcome": "timeout"})
    assert (granted, timed_out) == (1.0, 1.0)


async def test_a_waiter_gets_the_permit_once_it_is_released(redis: Redis) -> None:
    arbiter = arbiter_on(redis, poll_interval_s=0.01)
    first = await arbiter.acquire("valve:V-01")
    waiter = asyncio.create_task(arbiter.acquire("valve:V-01", wait_timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert await arbiter.release(first)
    second = await waiter
    assert second.fencing_token == first.fencing_token + 1


async def test_a_dead_holder_loses_the_resource_after_its_ttl(redis: Redis) -> None:
    arbiter = arbiter_on(redis, poll_interval_s=0.01)
    dead = await arbiter.acquire("valve:V-01", ttl_s=0.2)  # never renewed nor released
    taker = await arbiter.acquire("valve:V-01", wait_timeout_s=5)
    assert taker.fencing_token > dead.fencing_token
    assert not await arbiter.renew(dead)
    assert dead.lost
    assert not await arbiter.release(dead)
    assert set(await arbiter.holders("valve:V-01")) == {taker.holder}


async def test_the_permit_is_renewed_while_the_body_runs(redis: Redis) -> None:
    arbiter = arbiter_on(redis, ttl_s=0.6)
    async with arbiter.permit("valve:V-01") as held:
        await asyncio.sleep(1.8)  # three TTLs
        with pytest.raises(PermitTimeoutError):
            await arbiter.acquire("valve:V-01", wait_timeout_s=0)
        assert not held.lost
    again = await arbiter.acquire("valve:V-01", wait_timeout_s=0)
    assert again.fencing_token == held.fencing_token + 1


async def test_the_permit_is_released_when_the_body_fails_or_is_cancelled(redis: Redis) -> None:
    arbiter = arbiter_on(redis)
    with pytest.raises(RuntimeError, match="handler broke"):
        async with arbiter.permit("valve:V-01"):
            raise RuntimeError("handler broke")
    assert await arbiter.holders("valve:V-01") == {}

    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with arbiter.permit("valve:V-01"):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold_forever())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await arbiter.holders("valve:V-01") == {}


async def test_released_permits_leave_only_the_fence_counter(redis: Redis) -> None:
    arbiter = arbiter_on(redis)
    async with arbiter.permit("valve:V-01"):
        pass
    holders, tokens, fence = permit_keys("valve:V-01")
    assert await redis.exists(holders, tokens) == 0
    assert await redis.get(fence) == "1"


async def test_fencing_guard_rejects_a_stale_token(redis: Redis) -> None:
    arbiter = arbiter_on(redis, poll_interval_s=0.01)
    guard = FencingGuard(redis)
    stalled = await arbiter.acquire("valve:V-01", ttl_s=0.2)
    await guard.accept("modbus:127.0.0.1:5020/1", stalled.fencing_token)
    fresh = await arbiter.acquire("valve:V-01", wait_timeout_s=5)
    await guard.accept("modbus:127.0.0.1:5020/1", fresh.fencing_token)
    await guard.accept("modbus:127.0.0.1:5020/1", fresh.fencing_token)  # same holder again
    with pytest.raises(StaleFencingTokenError) as caught:
        await guard.accept("modbus:127.0.0.1:5020/1", stalled.fencing_token)
    assert (caught.value.token, caught.value.newest_token) == (
        stalled.fencing_token, fresh.fencing_token)
    assert "is stale" in str(caught.value)


async def test_max_holders_must_be_positive(redis: Redis) -> None:
    with pytest.raises(ValueError, match="max_holders"):
        await arbiter_on(redis).acquire("valve:V-01", max_holders=0)
