"""The fast path of local capabilities (issue 15): a capability with no effect outside the
fleet is called without a timeout slot or a breaker, and keeps everything else (its
errors, its retry policy); a remote one keeps both."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from framework.consuming.capabilities.breaker import BreakerBoard, BreakerPolicy
from framework.consuming.capabilities.executor import ExecutionDeps, RegistryExecutor
from framework.consuming.capabilities.invocation import invoke
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import (
    CallContext,
    CallPolicy,
    CallRequest,
    CapabilitySpec,
)
from framework.core.clock import SystemClock
from framework.core.deadlines import Deadlines
from framework.core.errors import CallFailedError, CircuitOpenError, PermanentCallError
from framework.core.logs import get_logger
from framework.testing import FakeClock

LOG = get_logger(test="fast-path")
# One failure opens a breaker; no retry: every call is one attempt.
FRAGILE = CallPolicy(timeout_s=0.05, max_retries=0, breaker=BreakerPolicy(failure_threshold=1))


async def _down(params: Mapping[str, Any], context: CallContext) -> None:
    raise ConnectionError("peer down")


async def _slow(params: Mapping[str, Any], context: CallContext) -> str:
    await asyncio.sleep(0.3)
    return "finished"


def _context(redis: Redis) -> CallContext:
    return CallContext(
        idempotency_key="events:1-0:rule:step", event={}, redis=redis, clock=FakeClock(), logger=LOG
    )


@pytest.mark.parametrize("local", [False, True])
async def test_failures_open_the_breaker_of_a_remote_capability_never_of_a_local_one(
    redis: Redis, local: bool
) -> None:
    spec = CapabilitySpec("flaky", "1.0.0", _down, policy=FRAGILE, local=local)
    board = BreakerBoard(clock=FakeClock(), logger=LOG)
    with pytest.raises(CallFailedError, match="peer down"):
        await invoke(spec, {}, _context(redis), deadlines=Deadlines(), breakers=board)
    second = pytest.raises(CallFailedError if local else CircuitOpenError)
    with second:
        await invoke(spec, {}, _context(redis), deadlines=Deadlines(), breakers=board)


@pytest.mark.parametrize("local", [False, True])
async def test_a_slow_local_call_is_not_cut_at_the_timeout_a_remote_one_is(
    redis: Redis, local: bool
) -> None:
    spec = CapabilitySpec("slow", "1.0.0", _slow, policy=FRAGILE, local=local)
    call = invoke(spec, {}, _context(redis), deadlines=Deadlines(resolution_s=0.01))
    if local:
        assert await call == "finished"
    else:
        with pytest.raises(CallFailedError, match="timed out"):
            await call


async def test_a_local_capability_keeps_its_errors(redis: Redis) -> None:
    async def bad_params(params: Mapping[str, Any], context: CallContext) -> None:
        raise ValueError("params: message missing")

    spec = CapabilitySpec("log", "1.0.0", bad_params, local=True)
    with pytest.raises(PermanentCallError, match="log@1.0.0: not retryable: ValueError"):
        await invoke(spec, {}, _context(redis), deadlines=Deadlines())


async def test_a_capability_logs_with_the_entry_it_runs_for(redis: Redis) -> None:
    """No context is bound per entry: the capability's logger names the entry itself."""

    async def say(params: Mapping[str, Any], context: CallContext) -> None:
        context.logger.warning("valve_checked")

    registry = CapabilityRegistry()
    registry.register(CapabilitySpec("say", "1.0.0", say, local=True))
    clock = SystemClock()
    executor = RegistryExecutor(
        registry,
        ExecutionDeps(
            redis=redis,
            clock=clock,
            logger=LOG,
            breakers=BreakerBoard(clock=clock, logger=LOG),
            deadlines=Deadlines(),
            call_metrics=None,
        ),
    )
    request = CallRequest(
        capability_id="say",
        version_range=None,
        params={},
        idempotency_key="events:7-0:r:s",
        rule="r",
        step="s",
        event={"stream": "events", "entry_id": "7-0"},
    )
    with structlog.testing.capture_logs() as logs:
        await executor.execute(request)
    assert {
        "event": "valve_checked",
        "stream": "events",
        "entry_id": "7-0",
        "rule": "r",
        "step": "s",
        "capability": "say@1.0.0",
    }.items() <= logs[-1].items()
