"""``drone_waypoint``'s parameters and the vehicles it may reach.

A step names a vehicle by its id (``"vehicle": "uav-1"``); where that vehicle
listens (host, UDP port, MAVLink system and component ids, link timing) is
configuration (``MAVLINK_VEHICLES``), never event data. Waypoints are checked for
range (latitude, longitude, altitude) and their count bounded, so an event cannot
send a vehicle off the globe or overflow its mission store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.consuming import describe_validation_error

# What one upload may hold: more than any survey plan this fleet drives, and
# within what small autopilots store (ArduPilot on 1 MiB boards: ~700 items).
MAX_WAYPOINTS = 500
VEHICLES_ENV = "MAVLINK_VEHICLES"
_VEHICLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Command = Literal["waypoint", "takeoff", "land", "loiter_time", "return_to_launch"]
Frame = Literal["relative", "global"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)


class Waypoint(_Model):
    """One mission item. ``holdS``: time at a waypoint, or the loiter time;
    ``acceptRadiusM``: how close counts as reached."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt_m: float = Field(ge=-1000, le=10_000)
    command: Command = "waypoint"
    hold_s: float = Field(0, ge=0, le=3600)
    accept_radius_m: float = Field(0, ge=0, le=1000)


class WaypointParams(_Model):
    vehicle: str = Field(pattern=_VEHICLE_ID.pattern)
    waypoints: list[Waypoint] = Field(max_length=MAX_WAYPOINTS)
    frame: Frame = "relative"
    auto_continue: bool = True


class VehicleAddress(_Model):
    """Where one vehicle listens for MAVLink over UDP, and how patient to be with it:
    each message waits ``messageTimeoutMs`` and is sent again up to ``retries`` times;
    an upload, and a read-back (download, MISSION_CURRENT, position), each end within
    ``deadlineMs``."""

    host: str = Field(min_length=1)
    port: int = Field(14550, ge=1, le=65535)
    system_id: int = Field(1, ge=1, le=255)
    component_id: int = Field(1, ge=0, le=255)
    message_timeout_ms: int = Field(1500, ge=10, le=60_000)
    retries: int = Field(5, ge=0, le=20)
    deadline_ms: int = Field(30_000, ge=100, le=600_000)

    @property
    def target(self) -> str:
        return f"mavlink:{self.host}:{self.port}/{self.system_id}/{self.component_id}"

    @property
    def message_timeout_s(self) -> float:
        return self.message_timeout_ms / 1000


class _Vehicles(BaseModel):
    vehicles: dict[str, VehicleAddress]

    @model_validator(mode="after")
    def _named(self) -> Self:
        for name in self.vehicles:
            if not _VEHICLE_ID.match(name):
                raise ValueError(f"{name!r} is not a vehicle id (letters, digits, _ . -)")
        return self


def parse_params(params: Mapping[str, Any]) -> WaypointParams:
    try:
        return WaypointParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ValueError(f"drone_waypoint params: {describe_validation_error(exc)}") from None


def parse_vehicles(raw: str | None) -> dict[str, VehicleAddress]:
    """``MAVLINK_VEHICLES``: ``{"uav-1": {"host": "10.0.0.5", "port": 14550,
    "systemId": 1}}``; unset or empty: no vehicle."""
    if not raw:
        return {}
    try:
        return _Vehicles.model_validate({"vehicles": orjson.loads(raw)}).vehicles
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"drone_waypoint: {VEHICLES_ENV} is not JSON: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"drone_waypoint: {VEHICLES_ENV}: "
                         f"{describe_validation_error(exc)}") from None
