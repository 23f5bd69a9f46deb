"""``pump_control``: start, stop or set the speed of a configured pump, over Modbus
(a coil runs it, a holding register sets its speed, scaled) or OPC-UA (a node for
each). Parameters::

    {"pumpId": "P-01", "action": "start", "speed": 42.5}   # speed optional
    {"pumpId": "P-01", "action": "set_speed", "speed": 60}
    {"pumpId": "P-01", "action": "stop"}

The pump, its device and its points come from the plant configuration
(:mod:`providers.plant.settings`), never from the event. The read function
reports what the interlocks and the read-back need::

    {"pumpId": "P-01", "reachable": true, "running": true, "speed": 42.5,
     "signals": {"level": 0.8, "inletOpen": true}}

so the signed definition holds the interlocks as preconditions (``state.signals.level
> 0.2``: not dry-running) and the read-back as postconditions; its rollback stops
the pump. An unreachable device reads as ``reachable: false``. Under a permit the
fencing token is checked against the highest one the pump accepted before
anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.consuming import (
    CallContext,
    CallPolicy,
    CapabilitySpec,
    ResourcePolicy,
    describe_validation_error,
)
from framework.core import TransientSourceError
from providers.plant.guard import allowed, fence, retryable
from providers.plant.points import session
from providers.plant.settings import PlantSettings, Pump, known

PUMP_CONTROL_ID = "pump_control"
PUMP_CONTROL_VERSION = "1.0.0"
# One pump is driven by one executor at a time.
PUMP_RESOURCE = ResourcePolicy("pump:{pumpId}")


class PumpParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)

    pump_id: str = Field(min_length=1, max_length=200)
    action: Literal["start", "stop", "set_speed"]
    speed: float | None = None

    @model_validator(mode="after")
    def _speed_fits_action(self) -> PumpParams:
        if self.action == "set_speed" and self.speed is None:
            raise ValueError("set_speed needs speed")
        if self.action == "stop" and self.speed is not None:
            raise ValueError("stop takes no speed")
        return self


def parse_pump_params(params: Mapping[str, Any]) -> PumpParams:
    try:
        return PumpParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"{PUMP_CONTROL_ID} params: {describe_validation_error(exc)}") from None


class Pumps:
    """The configured pumps: commands and read-back."""

    def __init__(self, settings: PlantSettings) -> None:
        self._settings = settings

    def pump(self, call: PumpParams) -> Pump:
        pump = self._settings.pumps.get(call.pump_id)
        if pump is None:
            raise ValueError(f"{PUMP_CONTROL_ID}: "
                             f"{known(self._settings.pumps, 'pump', call.pump_id)}")
        if call.speed is not None:
            if pump.speed is None:
                raise ValueError(f"{PUMP_CONTROL_ID}: pump {call.pump_id} has no speed point; "
                                 "start or stop it without speed")
            if not pump.min_speed <= call.speed <= pump.max_speed:
                raise ValueError(f"{PUMP_CONTROL_ID}: speed {call.speed} of pump "
                                 f"{call.pump_id} is outside {pump.min_speed}..{pump.max_speed}")
        return pump

    async def command(self, params: Mapping[str, Any], context: CallContext) -> Any:
        call = parse_pump_params(params)
        pump = self.pump(call)
        device = allowed(self._settings.devices[pump.device], context, PUMP_CONTROL_ID)
        target = f"pump:{pump.device}/{call.pump_id}"
        await fence(context.redis, target, context.fencing_token)
        async with session(device, PUMP_CONTROL_ID) as io:
            if call.speed is not None and pump.speed is not None:
                # Speed first: a pump starts at the speed asked, not the last one.
                await io.write(pump.speed, call.speed)
            if call.action != "set_speed":
                await io.write(pump.run, call.action == "start")
        context.logger.info("pump_commanded", pump=call.pump_id, action=call.action,
                            speed=call.speed, target=target,
                            fencing_token=context.fencing_token)
        return {"pumpId": call.pump_id, "action": call.action, "speed": call.speed,
                "fencingToken": context.fencing_token}

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_pump_params(params)
        pump = self.pump(call)
        device = allowed(self._settings.devices[pump.device], context, PUMP_CONTROL_ID)
        try:
            async with session(device, PUMP_CONTROL_ID) as io:
                running = await io.read(pump.running or pump.run)
                feedback = pump.speed_feedback or pump.speed
                speed = await io.read(feedback) if feedback is not None else None
                signals = {name: await io.read(point) for name, point in pump.signals.items()}
        except TransientSourceError as exc:
            context.logger.warning("pump_unreachable", pump=call.pump_id, error=str(exc))
            return {"pumpId": call.pump_id, "reachable": False, "running": None,
                    "speed": None, "signals": dict.fromkeys(pump.signals)}
        return {"pumpId": call.pump_id, "reachable": True, "running": bool(running),
                "speed": speed, "signals": signals}


def pump_control_spec(settings: PlantSettings, *,
                      policy: CallPolicy | None = None) -> CapabilitySpec:
    """``pump_control`` over the configured pumps."""
    pumps = Pumps(settings)
    return CapabilitySpec(
        id=PUMP_CONTROL_ID,
        version=PUMP_CONTROL_VERSION,
        handler=pumps.command,
        description="Start, stop or set the speed of a pump (Modbus or OPC-UA), read back",
        read_state=pumps.read_state,
        policy=policy or CallPolicy(timeout_s=10.0, max_retries=2, retryable=retryable),
        resource=PUMP_RESOURCE,
        breaker_scope=lambda params: str(params.get("pumpId")),
    )
