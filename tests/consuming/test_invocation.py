"""invoke(): retries with backoff on the fake clock, non-retryable errors, timeouts,
sync handlers, Retry-After and the call duration histogram."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming.capabilities.invocation import CallMetrics, invoke
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.core.deadlines import Deadlines
from framework.core.errors import (
    CallFailedError,
    DeadLetterError,
    PermanentCallError,
    PermanentSourceError,
    TransientSourceError,
)
from framework.core.host_policy import HostPolicy
from framework.core.logs import get_logger
from framework.testing import FakeClock
from providers.http import HttpActions
from tests.rules_target import HttpTarget, TargetReply

# The test targets listen on 127.0.0.1: allowed explicitly, as a deployment must.
LOCAL = HostPolicy.of(["127.0.0.1"])

# One deadline timer set for the calls of this module, as a process has.
DEADLINES = Deadlines()


def context(redis: Redis, clock: FakeClock, key: str = "s:1-0:rule:step") -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=clock,
                       logger=get_logger(test="invocation"))


async def run_with_clock(clock: FakeClock, call: Any) -> Any:
    """Run ``call`` and advance the fake clock whenever it sleeps, until it ends."""
    task = asyncio.ensure_future(call)
    while not task.done():
        sleeping = asyncio.ensure_future(clock.until_sleeping(1))
        await asyncio.wait({task, sleeping}, return_when=asyncio.FIRST_COMPLETED)
        if sleeping.done() and not task.done():
            await clock.advance(1.0)
        else:
            sleeping.cancel()
    return task.result()


async def test_http_call_retries_after_1_2_4_s_then_succeeds(redis: Redis) -> None:
    clock = FakeClock()
    async with HttpTarget(now_s=clock.monotonic) as target:
        target.reply("/flaky", TargetReply(503), TargetReply(502), TargetReply(500),
                     TargetReply(200, {"ok": True}))
        actions = HttpActions(hosts=LOCAL)
        try:
            spec = actions.specs()[0]
            result = await run_with_clock(clock, invoke(
                spec, {"method": "POST", "url": f"{target.url}/flaky", "json": {"a": 1}},
                context(redis, clock), deadlines=DEADLINES))
        finally:
            await actions.aclose()
    assert result == {"status": 200, "json": {"ok": True}}
    arrivals = [request.at_s for request in target.received_at("/flaky")]
    # First attempt at 0, then after 1 s, 2 s and 4 s.
    assert arrivals == [0.0, 1.0, 3.0, 7.0]
    assert {request.headers["Idempotency-Key"] for request in target.received} == {
        "s:1-0:rule:step"}


async def test_non_retryable_400_fails_at_once(redis: Redis) -> None:
    clock = FakeClock()
    async with HttpTarget() as target:
        target.reply("/bad", TargetReply(400, {"error": "missing field"}))
        actions = HttpActions(hosts=LOCAL)
        try:
            with pytest.raises(PermanentCallError) as caught:
                await invoke(actions.specs()[0], {"url": f"{target.url}/bad"},
                             context(redis, clock), deadlines=DEADLINES)
        finally:
            await actions.aclose()
    assert len(target.received) == 1
    assert caught.value.attempts == 1
    assert "400" in caught.value.reason and "missing field" in caught.value.reason
    assert isinstance(caught.value, DeadLetterError)


async def test_every_attempt_failing_raises_call_failed_with_the_last_error(
    redis: Redis,
) -> None:
    clock = FakeClock()
    calls: list[float] = []

    async def always_down(params: Mapping[str, Any], ctx: CallContext) -> None:
        calls.append(ctx.clock.monotonic())
        raise TransientSourceError(f"down #{len(calls)}")

    spec = CapabilitySpec("down", "1.0.0", always_down)
    with pytest.raises(CallFailedError) as caught:
        await run_with_clock(clock, invoke(spec, {}, context(redis, clock), deadlines=DEADLINES))
    assert calls == [0.0, 1.0, 3.0, 7.0]
    assert caught.value.attempts == 4
    assert "down #4" in str(caught.value) and "down@1.0.0" in str(caught.value)
    assert not isinstance(caught.value, DeadLetterError)


async def test_declared_non_retryable_exception_is_not_retried(redis: Redis) -> None:
    clock = FakeClock()
    calls = 0

    class QuotaExceeded(Exception):
        pass

    async def over_quota(params: Mapping[str, Any], ctx: CallContext) -> None:
        nonlocal calls
        calls += 1
        raise QuotaExceeded("monthly quota used up")

    policy = CallPolicy(retryable=lambda exc: not isinstance(exc, QuotaExceeded))
    spec = CapabilitySpec("quota", "1.0.0", over_quota, policy=policy)
    with pytest.raises(PermanentCallError, match="monthly quota used up"):
        await invoke(spec, {}, context(redis, clock), deadlines=DEADLINES)
    assert calls == 1


async def test_a_permanent_source_error_from_a_handler_is_not_retried(redis: Redis) -> None:
    calls = 0

    async def refuses(params: Mapping[str, Any], ctx: CallContext) -> None:
        nonlocal calls
        calls += 1
        raise PermanentSourceError("401 Unauthorized")

    with pytest.raises(PermanentCallError, match="401"):
        await invoke(CapabilitySpec("x", "1.0.0", refuses), {}, context(redis, FakeClock()),
                     deadlines=DEADLINES)
    assert calls == 1


async def test_timeout_counts_as_a_retryable_failure(redis: Redis) -> None:
    started = 0

    async def hangs(params: Mapping[str, Any], ctx: CallContext) -> None:
        nonlocal started
        started += 1
        await asyncio.sleep(30)

    spec = CapabilitySpec("slow", "1.0.0", hangs,
                          policy=CallPolicy(timeout_s=0.05, max_retries=1, backoff_base_s=0))
    with pytest.raises(CallFailedError, match="timed out") as caught:
        await invoke(spec, {}, context(redis, FakeClock()), deadlines=DEADLINES)
    assert started == 2
    assert caught.value.attempts == 2


async def test_sync_handlers_run_in_a_worker_thread(redis: Redis) -> None:
    loop_thread = threading.get_ident()

    def blocking(params: Mapping[str, Any], ctx: CallContext) -> dict[str, Any]:
        return {"thread": threading.get_ident(), "doubled": params["n"] * 2}

    result = await invoke(CapabilitySpec("sync", "1.0.0", blocking), {"n": 21},
                          context(redis, FakeClock()), deadlines=DEADLINES)
    assert result["doubled"] == 42
    assert result["thread"] != loop_thread


async def test_retry_after_longer_than_the_backoff_is_honoured(redis: Redis) -> None:
    clock = FakeClock()
    async with HttpTarget(now_s=clock.monotonic) as target:
        target.reply("/limited", TargetReply(429, headers={"Retry-After": "5"}),
                     TargetReply(200, {"ok": True}))
        actions = HttpActions(hosts=LOCAL)
        try:
            await run_with_clock(clock, invoke(actions.specs()[0],
                                               {"url": f"{target.url}/limited"},
                                               context(redis, clock), deadlines=DEADLINES))
        finally:
            await actions.aclose()
    assert [request.at_s for request in target.received] == [0.0, 5.0]


async def test_call_durations_are_observed_by_capability_version_and_status(
    redis: Redis,
) -> None:
    registry = CollectorRegistry()
    metrics = CallMetrics.create(registry)
    outcomes = iter([TransientSourceError("once"), None])

    async def flaky(params: Mapping[str, Any], ctx: CallContext) -> str:
        failure = next(outcomes)
        if failure:
            raise failure
        return "done"

    clock = FakeClock()
    spec = CapabilitySpec("flaky", "2.1.0", flaky)
    assert await run_with_clock(clock, invoke(spec, {}, context(redis, clock), deadlines=DEADLINES,
                                              metrics=metrics)) == "done"
    for status in ("ok", "error"):
        count = registry.get_sample_value(
            "connector_call_duration_ms_count",
            {"capability_id": "flaky", "version": "2.1.0", "status": status})
        assert count == 1
