"""The innermost capability executor and what every executor of a process shares.

:class:`RegistryExecutor` resolves a :class:`CallRequest` in the
:class:`~framework.consuming.capabilities.registry.CapabilityRegistry`, builds its
:class:`CallContext` and calls :func:`~framework.consuming.capabilities.invocation.invoke`
(timeout, retries, breaker). It runs alone when capabilities are unsigned, and
innermost in the signed catalog's pipeline (``framework.trust.execution``) otherwise.

:class:`ExecutionDeps` is created once by the process and injected into both: one
breaker board (a failing capability is refused the same way on either path) and one
deadline timer set per process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from framework.consuming.capabilities.breaker import BreakerBoard
from framework.consuming.capabilities.invocation import CallMetrics, invoke
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import (
    CallContext,
    CallPolicy,
    CallRequest,
    CapabilitySpec,
)
from framework.core.clock import Clock
from framework.core.deadlines import Deadlines
from framework.core.errors import DeadLetterError, UnknownCapabilityError
from framework.core.logs import Logger


@dataclass(frozen=True)
class ExecutionDeps:
    """The process's shared pieces of capability execution."""

    redis: Redis
    clock: Clock
    logger: Logger
    breakers: BreakerBoard
    deadlines: Deadlines
    # connector_call_duration_ms; None: calls are not measured.
    call_metrics: CallMetrics | None
    # True under a stream consumer: a failed attempt is retried by redelivering the entry
    # after its backoff (RetryLaterError), not by waiting in an in-flight slot.
    reschedule_retries: bool = False

    def context_for(self, request: CallRequest, capability_key: str) -> CallContext:
        """What the handler (and the capability's state read) of ``request`` gets."""
        return CallContext(
            idempotency_key=request.idempotency_key,
            event=request.event,
            redis=self.redis,
            clock=self.clock,
            # The entry's context too: the consumer binds none per entry.
            logger=self.logger.bind(capability=capability_key, rule=request.rule,
                                    step=request.step, stream=request.event.get("stream"),
                                    entry_id=request.event.get("entry_id")),
            fencing_token=request.fencing_token,
            hosts=request.hosts,
        )


class RegistryExecutor:
    """A :class:`~framework.consuming.capabilities.spec.CapabilityExecutor`: registry ->
    context -> :func:`invoke`."""

    def __init__(self, registry: CapabilityRegistry, deps: ExecutionDeps) -> None:
        self._registry = registry
        self._deps = deps

    async def execute(self, request: CallRequest) -> Any:
        spec = self._spec_for(request)
        deps = self._deps
        return await invoke(spec, request.params, deps.context_for(request, spec.key),
                            breakers=deps.breakers, policy=policy_for(spec.policy, request),
                            metrics=deps.call_metrics, deadlines=deps.deadlines,
                            reschedule=deps.reschedule_retries)

    def _spec_for(self, request: CallRequest) -> CapabilitySpec:
        try:
            if request.handler is not None:
                return self._registry.lookup(request.handler)
            return self._registry.resolve(request.capability_id, request.version_range)
        except UnknownCapabilityError as exc:
            # A rule naming a capability this process lacks: retrying will not help;
            # after a deploy the dead letter can be replayed.
            raise DeadLetterError(str(exc), rule=request.rule, step=request.step) from exc


def build_executor(registry: CapabilityRegistry, deps: ExecutionDeps) -> RegistryExecutor:
    """The executor of unsigned capabilities: the registry's, nothing around it."""
    return RegistryExecutor(registry, deps)


def policy_for(policy: CallPolicy, request: CallRequest) -> CallPolicy:
    """The capability's policy with the step's overrides applied."""
    changes: dict[str, Any] = {}
    if request.timeout_ms is not None:
        changes["timeout_s"] = request.timeout_ms / 1000
    if request.on_open is not None:
        changes["on_open"] = request.on_open
    return replace(policy, **changes) if changes else policy
