"""``drone_waypoint``: upload a waypoint mission to a MAVLink vehicle, read it back.

Parameters::

    {"vehicle": "uav-1", "frame": "relative",
     "waypoints": [{"lat": 48.85, "lon": 2.29, "altM": 30, "command": "takeoff"},
                   {"lat": 48.86, "lon": 2.30, "altM": 40, "holdS": 5, "acceptRadiusM": 2},
                   {"lat": 0, "lon": 0, "altM": 0, "command": "return_to_launch"}]}

The vehicle's address comes from the configured map (``MAVLINK_VEHICLES``), never
from the event; a step's ``allowHosts`` can narrow it further. The read function
downloads the vehicle's mission and asks for MISSION_CURRENT and
GLOBAL_POSITION_INT::

    {"reachable": true, "frame": "relative", "waypoints": [...], "matches": true,
     "missionTotal": 3, "missionCurrent": 0, "position": {"lat": .., "lon": .., "altM": ..}}

``matches``: the vehicle holds exactly the waypoints of the call (the
postcondition, with ``missionTotal``, MISSION_CURRENT's count); ``waypoints`` and
``frame`` are what a rollback ``{"waypoints": "previous", "frame": "previous"}``
uploads again. An unreachable vehicle reads as ``{"reachable": false}``.

A completed upload is recorded in the :class:`~providers.outbox.SentLedger`: a
redelivered step does not upload again (which would restart the mission from
its first item).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymavlink.dialects.v20 import common as mavlink

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, ResourcePolicy
from framework.core import RefusedTargetError, TransientSourceError
from providers.mavlink.link import MavlinkLink
from providers.mavlink.mission import (
    download_mission,
    encode_item,
    request_message,
    upload_mission,
)
from providers.mavlink.params import (
    VEHICLES_ENV,
    VehicleAddress,
    WaypointParams,
    parse_params,
    parse_vehicles,
)
from providers.outbox import SentLedger

DRONE_WAYPOINT_ID = "drone_waypoint"
DRONE_WAYPOINT_VERSION = "1.0.0"
# One mission transfer per vehicle at a time: two interleaved uploads corrupt both.
DRONE_RESOURCE = ResourcePolicy("vehicle:{vehicle}")
_NO_MISSION = 65535  # MISSION_CURRENT.total when the vehicle holds no mission


class DroneActions:
    def __init__(self, vehicles: Mapping[str, VehicleAddress] | None = None, *,
                 env: Mapping[str, str] | None = None, ledger: SentLedger | None = None,
                 policy: CallPolicy | None = None) -> None:
        """``vehicles``: the map; or read from ``env[MAVLINK_VEHICLES]`` at each call
        (a bad value fails the calls, naming it, not the process)."""
        self._vehicles = dict(vehicles) if vehicles is not None else None
        self._env = env or {}
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=60.0, max_retries=2, backoff_max_s=10.0)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            DRONE_WAYPOINT_ID, DRONE_WAYPOINT_VERSION, self.upload, policy=self._policy,
            description="Upload a MAVLink waypoint mission to a configured vehicle, read back",
            read_state=self.read_state, resource=DRONE_RESOURCE,
            breaker_scope=lambda params: f"vehicle:{params.get('vehicle')}")

    def vehicle(self, call: WaypointParams, context: CallContext) -> VehicleAddress:
        vehicles = (self._vehicles if self._vehicles is not None
                    else parse_vehicles(self._env.get(VEHICLES_ENV)))
        address = vehicles.get(call.vehicle)
        if address is None:
            raise ValueError(f"drone_waypoint: vehicle {call.vehicle!r} is not configured "
                             f"in {VEHICLES_ENV} (known: {', '.join(sorted(vehicles)) or 'none'})")
        if context.hosts is not None:
            reason = context.hosts.refuse_name(address.host, address.port)
            if reason is not None:
                raise RefusedTargetError(f"drone_waypoint: {reason}")
        return address

    async def upload(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call = parse_params(params)
        address = self.vehicle(call, context)

        async def deliver() -> dict[str, Any]:
            try:
                async with asyncio.timeout(address.deadline_ms / 1000), \
                        MavlinkLink(address) as link:
                    items = [encode_item(link, seq, waypoint, call.frame, call.auto_continue)
                             for seq, waypoint in enumerate(call.waypoints)]
                    await upload_mission(link, items)
            except TimeoutError:
                # A vehicle that keeps the transfer going without finishing it.
                raise TransientSourceError(
                    f"drone_waypoint: vehicle {address.target} did not finish the upload "
                    f"within {address.deadline_ms} ms (deadlineMs)") from None
            context.logger.info("mission_uploaded", vehicle=call.vehicle, target=address.target,
                                items=len(items))
            return {"vehicle": call.vehicle, "target": address.target, "items": len(items)}

        return await self._ledger.once(context, deliver)

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_params(params)
        address = self.vehicle(call, context)
        try:
            async with asyncio.timeout(address.deadline_ms / 1000), MavlinkLink(address) as link:
                frame, waypoints = await download_mission(link)
                current = await request_message(link, "MISSION_CURRENT",
                                                mavlink.MAVLINK_MSG_ID_MISSION_CURRENT)
                position = await request_message(link, "GLOBAL_POSITION_INT",
                                                 mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT)
        except (TransientSourceError, TimeoutError) as exc:
            context.logger.warning("vehicle_unreachable", target=address.target,
                                   error=str(exc) or "read-back deadline passed")
            return {"reachable": False, "matches": False, "waypoints": None, "frame": None,
                    "missionTotal": None, "missionCurrent": None, "position": None}
        held = [w.model_dump(by_alias=True) for w in waypoints]
        wanted = [w.model_dump(by_alias=True) for w in call.waypoints]
        return {"reachable": True, "frame": frame, "waypoints": held,
                "matches": _same_mission(held, wanted) and (frame == call.frame or not held),
                "missionTotal": 0 if current.total == _NO_MISSION else int(current.total),
                "missionCurrent": int(current.seq),
                "position": {"lat": position.lat / 1e7, "lon": position.lon / 1e7,
                             "altM": position.relative_alt / 1000}}


def _same_mission(held: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    """Equal within what the wire keeps: 1e-7 degree for a position, float32 for the
    altitude and the parameters."""
    if len(held) != len(wanted):
        return False
    for a, b in zip(held, wanted, strict=True):
        for name, value in b.items():
            if isinstance(value, bool) or not isinstance(value, float | int):
                if a[name] != value:
                    return False
                continue
            tolerance = 1.5e-7 if name in ("lat", "lon") else max(1e-4, abs(value) * 1e-6)
            if abs(float(a[name]) - float(value)) > tolerance:
                return False
    return True
