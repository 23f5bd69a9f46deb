"""The precondition step: every ``check`` over ``event``, ``payload``, ``params`` and
``state`` (what the capability's read function returns) must hold.

A false precondition is an answer, not a failure ("the valve is already closed"):
it is recorded (``precondition_failed``), the capability is not called and
``{"executed": false, ...}`` is returned, so the entry is acknowledged.

The step runs before the permit is taken and again once it is held, since another
holder may have changed the state meanwhile; a call already checked, with no
permit taken since, passes straight through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core.errors import DeadLetterError
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.definition import Condition
from framework.trust.execution.call import VerifiedCall, verified
from framework.trust.execution.metrics import ExecutionMetrics
from framework.trust.execution.state import StateReader, holds


class PreconditionStep:
    def __init__(self, state: StateReader, audit: AuditChain,
                 metrics: ExecutionMetrics | None, next_step: CapabilityExecutor) -> None:
        self._state = state
        self._audit = audit
        self._metrics = metrics
        self._next = next_step

    async def execute(self, request: CallRequest) -> Any:
        call = verified(request)
        if call.state_before is not None and call.permit is None:
            return await self._next.execute(call)
        state = await self._state_before(call)
        names = {**call.names, "state": state}
        for condition in call.definition.preconditions:
            if not await self._holds(call, condition, names, state):
                return await self._not_executed(call, condition, state)
        return await self._next.execute(replace(call, state_before=state))

    async def _state_before(self, call: VerifiedCall) -> Mapping[str, Any]:
        """A state that cannot be read for good is recorded before the dead letter."""
        try:
            return await self._state.read(call)
        except DeadLetterError as exc:
            await self._audit.append("failed", call.audit_fields(
                stage="read_state", reason=exc.reason, strategy="none"))
            raise

    async def _holds(self, call: VerifiedCall, condition: Condition,
                     names: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
        try:
            return holds(call, condition, names, "precondition")
        except DeadLetterError as exc:
            await self._audit.append("precondition_failed", call.audit_fields(
                condition=condition.check, error=exc.reason, state=state))
            raise

    async def _not_executed(self, call: VerifiedCall, condition: Condition,
                            state: Mapping[str, Any]) -> dict[str, Any]:
        if self._metrics is not None:
            self._metrics.precondition_failures.labels(call.definition.id,
                                                       condition.check).inc()
        record = await self._audit.append("precondition_failed", call.audit_fields(
            condition=condition.check, description=condition.description, state=state,
            resource=call.permit.resource if call.permit else None))
        self._state.context_for(call).logger.info("precondition_false",
                                                  condition=condition.check)
        return {"executed": False, "outcome": "precondition_failed",
                "condition": condition.check, "auditSeq": record.seq}
