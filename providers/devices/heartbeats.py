"""``device_heartbeat``: the capability that an absence trigger's heartbeat rule calls
(see framework.consuming.rules.absence); it records the event in the device registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.consuming import (
    HEARTBEAT_CAPABILITY,
    CallContext,
    CallPolicy,
    CapabilitySpec,
    describe_validation_error,
)
from providers.devices.registry import DeviceRegistry, Heartbeat
from providers.devices.registry_keys import (
    DEFAULT_EVENTS_STREAM,
    DEFAULT_GROUP,
    DEFAULT_TIMEOUT_S,
    DeviceKeys,
    check_device_id,
    check_group,
)


class HeartbeatParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device_id: Any = Field(alias="deviceId")
    group: Any = DEFAULT_GROUP
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=366 * 86400, alias="timeoutS")
    rule: str = Field("", max_length=200)
    context: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatAction:
    keys: DeviceKeys

    async def record(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        try:
            call = HeartbeatParams.model_validate(dict(params))
        except ValidationError as exc:
            raise ValueError(f"device_heartbeat params: {describe_validation_error(exc)}") \
                from None
        # An id from the event becomes a key name: checked, never used raw.
        device_id = check_device_id(_text(call.device_id), "device_heartbeat params: deviceId")
        group = check_group(_text(call.group) or DEFAULT_GROUP, "device_heartbeat params: group")
        registry = DeviceRegistry(context.redis, clock=context.clock, keys=self.keys)
        outcome = await registry.heartbeat(Heartbeat(
            device_id, timeout_s=call.timeout_s, group=group, context=call.context,
            rule=call.rule))
        return {"deviceId": device_id, "outcome": outcome.outcome,
                "deadlineMs": outcome.deadline_ms}


def _text(value: Any) -> str:
    # Numeric ids (meter 1042) are ids too; None (a missing field) is refused by the check.
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    return str(value) if isinstance(value, int | str) else repr(value)


def device_heartbeat_spec(env: Mapping[str, str]) -> CapabilitySpec:
    """The events stream is ``DEVICE_EVENTS_STREAM`` (default ``device-events``): the
    same as the watchdog's."""
    keys = DeviceKeys(events_stream=env.get("DEVICE_EVENTS_STREAM") or DEFAULT_EVENTS_STREAM)
    return CapabilitySpec(
        HEARTBEAT_CAPABILITY, "1.0.0", HeartbeatAction(keys).record,
        policy=CallPolicy(timeout_s=5.0, max_retries=1), local=True,
        description="Record a device heartbeat in the device registry")
