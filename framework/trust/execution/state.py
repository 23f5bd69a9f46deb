"""Reading a capability's state and checking a condition over it (pre- and postconditions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.consuming.capabilities.executor import ExecutionDeps
from framework.consuming.capabilities.spec import CallContext, is_retryable
from framework.core.errors import DeadLetterError, ExpressionError
from framework.core.expressions import Expression
from framework.trust.catalog.definition import Condition
from framework.trust.execution.call import VerifiedCall


class StateReader:
    """The state a call's capability reports (its ``read_state``), as conditions see it."""

    def __init__(self, deps: ExecutionDeps) -> None:
        self._deps = deps

    def context_for(self, call: VerifiedCall) -> CallContext:
        return self._deps.context_for(call, call.definition.key)

    async def read(self, call: VerifiedCall) -> Mapping[str, Any]:
        """``{}`` for a capability without a read function; a non-retryable failure to
        read is a :class:`DeadLetterError`."""
        if call.spec.read_state is None:
            return {}
        try:
            return dict(await call.spec.read_state(call.params, self.context_for(call)))
        except Exception as exc:
            if is_retryable(exc):
                raise
            raise DeadLetterError(f"capability {call.definition.key}: cannot read the "
                                  f"state: {exc}", rule=call.rule, step=call.step) from exc


def holds(call: VerifiedCall, condition: Condition, names: Mapping[str, Any],
          kind: str) -> bool:
    """Whether ``condition`` is true over ``names``; a condition that cannot be evaluated
    is a :class:`DeadLetterError`."""
    where = f"capability {call.definition.key} {kind}"
    try:
        return Expression(condition.check, where=where).is_true(names)
    except ExpressionError as exc:
        raise DeadLetterError(str(exc), rule=call.rule, step=call.step) from exc
