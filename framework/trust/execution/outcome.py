"""The outcome step: audit what the call did, roll back what failed.

* success: recorded as ``executed`` (with the state before and after and the
  duration) and the handler's result returned;
* the handler fails (after the invoker's retries) or a postcondition stays false:
  recorded as ``failed``; the definition's ``rollbackStrategy`` runs under the same
  permit (recorded as ``rollback``); an alert goes to ``capability-alerts`` when no
  strategy applies, the rollback failed or ``alertOnRollback`` is set. Then a handler
  failure is re-raised as it was (retryable ones come back, preconditions are checked
  again) and a postcondition failure raises :class:`RolledBackError`;
* a call refused by an open breaker was never attempted: nothing to undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core.clock import Clock
from framework.core.errors import CircuitOpenError, RolledBackError, StaleFencingTokenError
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.definition import RollbackAction
from framework.trust.execution.alerts import AlertStream
from framework.trust.execution.call import VerifiedCall, verified
from framework.trust.execution.metrics import ExecutionMetrics
from framework.trust.execution.postconditions import PostconditionFailedError
from framework.trust.execution.rollback import Rollback, strategy_label
from framework.trust.execution.state import StateReader


class OutcomeStep:
    def __init__(self, audit: AuditChain, state: StateReader, rollback: Rollback,
                 alerts: AlertStream, metrics: ExecutionMetrics | None, clock: Clock,
                 next_step: CapabilityExecutor) -> None:
        self._audit = audit
        self._clock = clock
        self._state = state
        self._rollback = rollback
        self._alerts = alerts
        self._metrics = metrics
        self._next = next_step

    async def execute(self, request: CallRequest) -> Any:
        call = verified(request)
        started_s = self._clock.monotonic()
        try:
            result = await self._next.execute(call)
        except PostconditionFailedError as exc:
            strategy, ok = await self._fail(call, stage="postcondition", reason=exc.reason)
            raise RolledBackError(
                f"capability {call.definition.key}: {exc.reason}; rollback {strategy} "
                f"{'done' if ok else 'FAILED'}", strategy=strategy, rollback_ok=ok,
                rule=call.rule, step=call.step) from None
        except Exception as exc:
            # A failed attempt retried by redelivery (RetryLaterError) is recorded and
            # undone like any handler failure: whether it acted is unknown.
            if _caused_by(exc, CircuitOpenError):
                raise
            await self._fail(call, stage="handler", reason=str(exc),
                             stale=_caused_by(exc, StaleFencingTokenError))
            raise
        await self._audit.append("executed", call.audit_fields(
            **call.fenced, result=result, stateBefore=call.state_before or {},
            stateAfter=await self._state_after(call),
            durationMs=round((self._clock.monotonic() - started_s) * 1000, 1)))
        return result

    async def _state_after(self, call: VerifiedCall) -> Mapping[str, Any]:
        try:
            return await self._state.read(call)
        except Exception as exc:
            # The call is done and verified: a failed read-back for the record must
            # not make the entry come back and act again.
            return {"error": str(exc)}

    async def _fail(self, call: VerifiedCall, *, stage: str, reason: str,
                    stale: bool = False) -> tuple[str, bool]:
        strategy = call.definition.rollback_strategy
        # A stale permit: a newer holder drives the resource now, undoing would fight it.
        label = "none" if stale else strategy_label(strategy, call.definition.id)
        record = await self._audit.append("failed", call.audit_fields(
            **call.fenced, stage=stage, reason=reason, strategy=label,
            stateBefore=call.state_before or {}))
        if self._metrics is not None:
            self._metrics.rollbacks.labels(call.definition.id, label).inc()
        ok = True
        if isinstance(strategy, RollbackAction) and label != "none":
            ok = await self._rollback.run(call, strategy, label)
        if label == "none" or not ok or (
                isinstance(strategy, RollbackAction) and strategy.alert_on_rollback):
            await self._alerts.announce(call, stage=stage, reason=reason, strategy=label,
                                        rollback_ok=ok, audit_seq=record.seq)
        return label, ok


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    # The chain can loop: invoke re-raises a dead letter "from" itself, so its cause is
    # itself (a RefusedTargetError out of a connection attempt does exactly that).
    visited: set[int] = set()
    seen: BaseException | None = exc
    while seen is not None and id(seen) not in visited:
        if isinstance(seen, kind):
            return True
        visited.add(id(seen))
        seen = seen.__cause__ or seen.__context__
    return False
