"""How capability execution is composed: the signed catalog's steps each wrap the next
around the registry's executor; the plain and the safe executor share the process's
one breaker board and deadline timer set; nothing is defaulted inside."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import (
    BreakerBoard,
    CallContext,
    CallPolicy,
    CapabilityExecutor,
    CapabilityRegistry,
    CapabilitySpec,
    ExecutionDeps,
    RegistryExecutor,
    build_executor,
)
from framework.consuming.capabilities.breaker import BreakerPolicy, BreakerState
from framework.consuming.capabilities.spec import CallRequest
from framework.core.clock import SystemClock
from framework.core.errors import CallFailedError, CircuitOpenError
from framework.core.logs import get_logger
from framework.trust import (
    AuditChain,
    Catalog,
    PrivateKey,
    ResourceArbiter,
    TrustDeps,
    TrustStore,
    build_safe_executor,
)
from framework.trust.execution.catalog_step import CatalogStep
from framework.trust.execution.outcome import OutcomeStep
from framework.trust.execution.permit import PermitStep
from framework.trust.execution.postconditions import PostconditionStep
from framework.trust.execution.preconditions import PreconditionStep
from framework.trust.execution.state import StateReader
from tests.execution_deps import execution_deps
from tests.trust.test_safe_executor import plain_definition

FLAKY_POLICY = CallPolicy(max_retries=0, breaker=BreakerPolicy(failure_threshold=2))


def request(capability_id: str, key: str = "s:1-0:r:step") -> CallRequest:
    return CallRequest(capability_id=capability_id, version_range=None, params={},
                       idempotency_key=key, event={}, rule="r", step="step")


def trust_deps(redis: Redis, deps: ExecutionDeps, catalog: Catalog) -> TrustDeps:
    return TrustDeps(catalog=catalog, audit=AuditChain(redis, clock=deps.clock),
                     arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger),
                     metrics=None)


def chain_of(executor: CapabilityExecutor) -> list[type[Any]]:
    """The classes of the executor and of each step it wraps, outermost first."""
    chain: list[type[Any]] = []
    step: object | None = executor
    while step is not None:
        chain.append(type(step))
        step = getattr(step, "_next", None)
    return chain


async def test_the_safe_executor_is_each_step_wrapping_the_next_around_the_registry(
    redis: Redis,
) -> None:
    deps = execution_deps(redis, SystemClock())
    catalog = Catalog(redis, TrustStore([PrivateKey.generate().public()]), clock=deps.clock,
                      logger=deps.logger)
    executor = build_safe_executor(CapabilityRegistry(), deps, trust_deps(redis, deps, catalog))
    assert chain_of(executor) == [CatalogStep, PreconditionStep, PermitStep, PreconditionStep,
                                  OutcomeStep, PostconditionStep, RegistryExecutor]
    assert chain_of(build_executor(CapabilityRegistry(), deps)) == [RegistryExecutor]


async def test_one_breaker_board_refuses_on_both_paths(redis: Redis) -> None:
    calls: list[str] = []

    async def flaky(params: Mapping[str, Any], context: CallContext) -> None:
        calls.append(context.idempotency_key)
        raise ConnectionError("target down")

    registry = CapabilityRegistry()
    registry.register(CapabilitySpec("flaky", "1.0.0", flaky, policy=FLAKY_POLICY))
    key = PrivateKey.generate()
    deps = execution_deps(redis, SystemClock())
    catalog = Catalog(redis, TrustStore([key.public()]), clock=deps.clock, logger=deps.logger)
    await catalog.register(plain_definition("flaky").signed_with(key))
    plain = build_executor(registry, deps)
    safe = build_safe_executor(registry, deps, trust_deps(redis, deps, catalog))

    for attempt in range(2):  # the threshold: opened by the unsigned path's failures
        with pytest.raises(CallFailedError):
            await plain.execute(request("flaky", f"s:{attempt}-0:r:step"))
    assert deps.breakers.state("flaky") is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await safe.execute(request("flaky", "s:9-0:r:step"))
    assert calls == ["s:0-0:r:step", "s:1-0:r:step"]  # the safe path never reached it


async def test_a_step_out_of_order_refuses_an_unverified_call(redis: Redis) -> None:
    deps = execution_deps(redis, SystemClock())
    step = PreconditionStep(StateReader(deps), AuditChain(redis, clock=deps.clock), None,
                            build_executor(CapabilityRegistry(), deps))
    with pytest.raises(TypeError, match="after the catalog step"):
        await step.execute(request("flaky"))


async def test_nothing_is_defaulted_inside(redis: Redis) -> None:
    clock, logger = SystemClock(), get_logger(test="pipeline")
    registry = CapabilityRegistry()
    with pytest.raises(TypeError):
        RegistryExecutor(registry)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ExecutionDeps(redis=redis, clock=clock, logger=logger)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        BreakerBoard(redis=redis)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ResourceArbiter(redis)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Catalog(redis, TrustStore([]))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        PermitStep(ResourceArbiter(redis, clock=clock, logger=logger), {},  # type: ignore[call-arg]
                   AuditChain(redis, clock=clock))
