"""The permit step: hold a permit from the :class:`ResourceArbiter` on the resource the
call drives (``valve:{valveId}``) while the rest of the pipeline runs; its fencing
token goes to the handler. A call that drives no resource passes straight through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from framework.consuming.capabilities.spec import (
    CallRequest,
    CapabilityExecutor,
    ResourcePolicy,
)
from framework.core.errors import DeadLetterError, PermitTimeoutError
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.execution.call import VerifiedCall, verified


class PermitStep:
    def __init__(self, arbiter: ResourceArbiter, resources: Mapping[str, ResourcePolicy],
                 audit: AuditChain, next_step: CapabilityExecutor) -> None:
        """``resources``: the resource policy by capability id, over the capability's own."""
        self._arbiter = arbiter
        self._resources = dict(resources)
        self._audit = audit
        self._next = next_step

    async def execute(self, request: CallRequest) -> Any:
        call = verified(request)
        resource, policy = self._resource(call)
        if policy is None:
            return await self._next.execute(call)
        try:
            async with self._arbiter.permit(
                resource, wait_timeout_s=policy.wait_timeout_s,
                max_holders=policy.max_holders, ttl_s=policy.ttl_s,
            ) as permit:
                return await self._next.execute(
                    replace(call, permit=permit, fencing_token=permit.fencing_token))
        except PermitTimeoutError as exc:
            await self._audit.append("permit_timeout", call.audit_fields(
                resource=exc.resource, reason=str(exc)))
            raise

    def _resource(self, call: VerifiedCall) -> tuple[str, ResourcePolicy | None]:
        """The resource the call drives: configured per capability id, else declared
        by the capability (``CapabilitySpec.resource``), else named by the call's
        ``resource`` parameter; none = no permit needed."""
        policy = self._resources.get(call.definition.id) or call.spec.resource
        if policy is None and "resource" in call.params:
            policy = ResourcePolicy("{resource}")
        if policy is None:
            return "", None
        try:
            return policy.resource_for(call.params), policy
        except ValueError as exc:
            raise DeadLetterError(f"capability {call.definition.key}: {exc}",
                                  rule=call.rule, step=call.step) from exc
