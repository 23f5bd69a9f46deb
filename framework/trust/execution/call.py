"""A call on its way through the safe pipeline: the request with what the steps found.

The catalog step turns a :class:`CallRequest` into a :class:`VerifiedCall`; the steps
after it add the state read before the action and the permit held for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from framework.consuming.capabilities.spec import CallRequest, CapabilitySpec
from framework.trust.arbiter import Permit
from framework.trust.catalog.definition import CapabilityDefinition

_REQUEST_FIELDS = tuple(item.name for item in fields(CallRequest))


@dataclass(frozen=True, kw_only=True)
class VerifiedCall(CallRequest):
    """A request whose capability the catalog resolved and verified."""

    definition: CapabilityDefinition
    key_id: str
    spec: CapabilitySpec
    # What the preconditions saw (None: not read yet).
    state_before: Mapping[str, Any] | None = None
    permit: Permit | None = None

    @classmethod
    def of(cls, request: CallRequest, definition: CapabilityDefinition, key_id: str,
           spec: CapabilitySpec) -> VerifiedCall:
        values = {name: getattr(request, name) for name in _REQUEST_FIELDS}
        values["handler"] = definition.handler
        return cls(**values, definition=definition, key_id=key_id, spec=spec)

    @property
    def names(self) -> dict[str, Any]:
        """What conditions and rollback templates see, besides ``state`` and ``result``."""
        payload = self.event.get("payload", {}) if isinstance(self.event, Mapping) else {}
        # Conditions use JSON literals: "device.self_test_passed == true".
        return {"event": self.event, "payload": payload, "params": self.params,
                "true": True, "false": False, "null": None}

    @property
    def fenced(self) -> dict[str, Any]:
        """The permit's part of the audit records of the action."""
        return {"resource": self.permit.resource if self.permit else None,
                "fencingToken": self.fencing_token}

    def audit_fields(self, **extra: Any) -> dict[str, Any]:
        return {
            "capability": self.definition.id, "version": self.definition.version,
            "keyId": self.key_id, "rule": self.rule, "step": self.step,
            "idempotencyKey": self.idempotency_key, "params": dict(self.params), **extra,
        }


def verified(request: CallRequest) -> VerifiedCall:
    """``request`` as the catalog step passed it on; TypeError in a pipeline composed
    without that step first."""
    if not isinstance(request, VerifiedCall):
        raise TypeError("this step runs after the catalog step: it got an unverified "
                        f"call of {request.capability_id}")
    return request
