"""The postcondition step: after the handler returns, each postcondition is polled
every ``pollIntervalMs`` until true or ``timeoutMs`` has passed (names: ``event``,
``payload``, ``params``, ``state`` and the handler's ``result``)."""

from __future__ import annotations

from typing import Any

import orjson

from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core.clock import Clock
from framework.core.errors import DeadLetterError
from framework.trust.catalog.definition import Condition
from framework.trust.execution.call import VerifiedCall, verified
from framework.trust.execution.state import StateReader, holds


class PostconditionFailedError(DeadLetterError):
    """The action ran and a postcondition did not become true: repeating it blindly is
    not safe. The outcome step turns it into a rollback."""


class PostconditionStep:
    def __init__(self, state: StateReader, clock: Clock,
                 next_step: CapabilityExecutor) -> None:
        self._state = state
        self._clock = clock
        self._next = next_step

    async def execute(self, request: CallRequest) -> Any:
        call = verified(request)
        result = await self._next.execute(call)
        for condition in call.definition.postconditions:
            problem = await self._await_condition(call, condition, result)
            if problem is not None:
                raise PostconditionFailedError(problem, rule=call.rule, step=call.step)
        return result

    async def _await_condition(self, call: VerifiedCall, condition: Condition,
                               result: Any) -> str | None:
        """None once ``condition`` holds, else why it did not within its timeout."""
        timeout_ms = condition.timeout_ms or 0
        deadline_s = self._clock.monotonic() + timeout_ms / 1000
        while True:
            try:
                state = await self._state.read(call)
                if holds(call, condition, {**call.names, "state": state, "result": result},
                         "postcondition"):
                    return None
                last = f"state {orjson.dumps(state, default=str).decode()}"
            except DeadLetterError as exc:
                return f"postcondition {condition.check!r} cannot be checked: {exc.reason}"
            except Exception as exc:
                # The target may be busy right after the action: keep polling.
                last = f"reading the state failed: {exc}"
            remaining_s = deadline_s - self._clock.monotonic()
            if remaining_s <= 0:
                label = f" ({condition.description})" if condition.description else ""
                return (f"postcondition {condition.check!r}{label} not true within "
                        f"{timeout_ms} ms (last {last})")
            await self._clock.sleep(min(condition.poll_interval_ms / 1000, remaining_s))
