"""``irrigation_control``: open a configured zone's valve for a bounded time, or
close it. Parameters::

    {"zoneId": "Z-01", "action": "open", "durationS": 900}   # <= the zone's maxDurationS
    {"zoneId": "Z-01", "action": "close"}

Before the valve opens, its close is written to the durable schedule
(:mod:`providers.plant.schedule`); the consumers' sweepers
(:mod:`providers.plant.sweeper`) close it when due, whoever opened it and whether
or not that process still lives. A close on command removes the scheduled one.

The read function::

    {"zoneId": "Z-01", "reachable": true, "open": true, "closeDueMs": 1764583200000}

A redelivered open (its step ran, the consumer died before acknowledging) finds
its schedule: while its close is still pending the valve is commanded open again
(the crash may have come between scheduling and opening), the close stays when
it was; once that close has run, nothing is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from redis.asyncio import Redis

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
from providers.plant.schedule import CloseSchedule
from providers.plant.settings import PlantSettings, Zone, known

IRRIGATION_CONTROL_ID = "irrigation_control"
IRRIGATION_CONTROL_VERSION = "1.0.0"
IRRIGATION_RESOURCE = ResourcePolicy("zone:{zoneId}")


class IrrigationParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)

    zone_id: str = Field(min_length=1, max_length=200)
    action: Literal["open", "close"]
    duration_s: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _duration_fits_action(self) -> IrrigationParams:
        if self.action == "open" and self.duration_s is None:
            raise ValueError("open needs durationS (seconds until the valve closes)")
        if self.action == "close" and self.duration_s is not None:
            raise ValueError("close takes no durationS")
        return self


def parse_irrigation_params(params: Mapping[str, Any]) -> IrrigationParams:
    try:
        return IrrigationParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"{IRRIGATION_CONTROL_ID} params: "
                         f"{describe_validation_error(exc)}") from None


class Zones:
    """The configured zones: commands, read-back, and the close the sweeper runs."""

    def __init__(self, settings: PlantSettings) -> None:
        self._settings = settings

    def zone(self, call: IrrigationParams) -> Zone:
        zone = self._settings.zones.get(call.zone_id)
        if zone is None:
            raise ValueError(f"{IRRIGATION_CONTROL_ID}: "
                             f"{known(self._settings.zones, 'zone', call.zone_id)}")
        if call.duration_s is not None and call.duration_s > zone.max_duration_s:
            raise ValueError(f"{IRRIGATION_CONTROL_ID}: durationS {call.duration_s} of zone "
                             f"{call.zone_id} is over its maxDurationS {zone.max_duration_s}")
        return zone

    async def command(self, params: Mapping[str, Any], context: CallContext) -> Any:
        call = parse_irrigation_params(params)
        zone = self.zone(call)
        await fence(context.redis, _target(call.zone_id, zone), context.fencing_token)
        schedule = CloseSchedule(context.redis)
        if call.action == "close":
            await self.write_valve(call.zone_id, zone, False, context)
            await schedule.cancel(call.zone_id)
            return {"zoneId": call.zone_id, "action": "close", "closesAtMs": None,
                    "skipped": False}
        assert call.duration_s is not None
        planned = await schedule.schedule(call.zone_id, call.duration_s * 1000,
                                          context.idempotency_key)
        if not planned.fresh and not planned.still_pending:
            context.logger.info("irrigation_open_skipped", zone=call.zone_id,
                                reason="this step's close already ran or was replaced",
                                due_ms=planned.due_ms)
            return {"zoneId": call.zone_id, "action": "open", "closesAtMs": planned.due_ms,
                    "skipped": True}
        await self.write_valve(call.zone_id, zone, True, context)
        context.logger.info("irrigation_opened", zone=call.zone_id,
                            duration_s=call.duration_s, closes_at_ms=planned.due_ms,
                            redelivered=not planned.fresh,
                            fencing_token=context.fencing_token)
        return {"zoneId": call.zone_id, "action": "open", "closesAtMs": planned.due_ms,
                "skipped": False}

    async def write_valve(self, zone_id: str, zone: Zone, open_: bool,
                          context: CallContext | None = None) -> None:
        device = self._settings.devices[zone.device]
        if context is not None:
            device = allowed(device, context, IRRIGATION_CONTROL_ID)
        async with session(device, IRRIGATION_CONTROL_ID) as io:
            await io.write(zone.valve, open_)

    async def close_due(self, zone_id: str, redis: Redis, fencing_token: int | None) -> None:
        """The sweeper's close, under its permit (None: forced without one); a zone
        no longer configured is a clear error."""
        zone = self._settings.zones.get(zone_id)
        if zone is None:
            raise ValueError(f"{IRRIGATION_CONTROL_ID}: scheduled close of "
                             f"{known(self._settings.zones, 'zone', zone_id)}")
        await fence(redis, _target(zone_id, zone), fencing_token)
        await self.write_valve(zone_id, zone, False)

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_irrigation_params(params)
        zone = self.zone(call)
        device = allowed(self._settings.devices[zone.device], context, IRRIGATION_CONTROL_ID)
        due = await CloseSchedule(context.redis).due_ms(call.zone_id)
        try:
            async with session(device, IRRIGATION_CONTROL_ID) as io:
                is_open = bool(await io.read(zone.valve))
        except TransientSourceError as exc:
            context.logger.warning("irrigation_unreachable", zone=call.zone_id, error=str(exc))
            return {"zoneId": call.zone_id, "reachable": False, "open": None,
                    "closeDueMs": due}
        return {"zoneId": call.zone_id, "reachable": True, "open": is_open, "closeDueMs": due}


def _target(zone_id: str, zone: Zone) -> str:
    """The fencing target: one zone's valve."""
    return f"zone:{zone.device}/{zone_id}"


def irrigation_control_spec(settings: PlantSettings, *,
                            policy: CallPolicy | None = None) -> CapabilitySpec:
    """``irrigation_control`` over the configured zones."""
    zones = Zones(settings)
    return CapabilitySpec(
        id=IRRIGATION_CONTROL_ID,
        version=IRRIGATION_CONTROL_VERSION,
        handler=zones.command,
        description="Open an irrigation zone's valve for a bounded time (a durable "
                    "scheduled close), or close it",
        read_state=zones.read_state,
        policy=policy or CallPolicy(timeout_s=10.0, max_retries=2, retryable=retryable),
        resource=IRRIGATION_RESOURCE,
        breaker_scope=lambda params: str(params.get("zoneId")),
    )
