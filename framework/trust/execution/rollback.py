"""Rolling a failed call back: the definition's ``rollbackStrategy`` (the same
capability with other parameters: ``revert``; another one: ``compensate``), resolved
in the catalog and run through the registry's invoker under the same permit;
recorded as ``rollback``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.consuming.rules.templating import Template
from framework.core.logs import Logger
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.definition import RollbackAction
from framework.trust.catalog.store import Catalog
from framework.trust.execution.call import VerifiedCall


def strategy_label(strategy: object, capability_id: str) -> str:
    """``none``, ``revert`` or ``compensate``: the label of metrics and records."""
    if not isinstance(strategy, RollbackAction):
        return "none"
    return "revert" if strategy.action == capability_id else "compensate"


class Rollback:
    def __init__(self, catalog: Catalog, invoker: CapabilityExecutor, audit: AuditChain,
                 logger: Logger) -> None:
        """``invoker``: the innermost executor (no preconditions, no second permit)."""
        self._catalog = catalog
        self._invoker = invoker
        self._audit = audit
        self._logger = logger

    async def run(self, call: VerifiedCall, action: RollbackAction, label: str) -> bool:
        """Whether the rollback ran; either way it is recorded."""
        definition = call.definition
        # Undoing with the same capability keeps its version unless a range is given.
        version_range = action.version_range or (
            definition.version if action.action == definition.id else None)
        error: str | None = None
        target = action.action
        params: dict[str, Any] = {}
        try:
            params = rollback_params(call, action, label)
            found = await self._catalog.resolve(action.action, version_range)
            target = found.definition.key
            await self._invoker.execute(CallRequest(
                capability_id=action.action, version_range=version_range, params=params,
                idempotency_key=f"{call.idempotency_key}:rollback", event=call.event,
                rule=call.rule, step=call.step, handler=found.definition.handler,
                # The undo may reach only where the step itself may (its allowHosts).
                fencing_token=call.fencing_token, hosts=call.hosts))
        except Exception as exc:
            error = str(exc)
            self._logger.error("rollback_failed", capability=definition.key, rule=call.rule,
                               step=call.step, action=target, error=error)
        await self._audit.append("rollback", call.audit_fields(
            **call.fenced, strategy=label, action=target, rollbackParams=params,
            ok=error is None, error=error))
        return error is None


def rollback_params(call: VerifiedCall, action: RollbackAction,
                    label: str) -> dict[str, Any]:
    """The strategy's parameters, templated (``{{ params.valveId }}``) over the call's
    names and the state read before it; a value ``"previous"`` is that state's value
    under the same name (``{"version": "previous"}``). A revert puts them over the
    call's own parameters; a compensation gets them alone."""
    before: Mapping[str, Any] = call.state_before or {}
    where = f"capability {call.definition.key} rollbackStrategy.params"
    rendered = Template(action.params, where=where, url_keys=("url",)).render(
        {**call.names, "state": before})
    for name, value in action.params.items():
        if value == "previous" and name in before:
            rendered[name] = before[name]
    return {**call.params, **rendered} if label == "revert" else dict(rendered)
