"""MAVLink vehicles: the ``drone_waypoint`` capability (mission upload with pymavlink's
codec over UDP, read back with MISSION_CURRENT and the vehicle's position)."""

from providers.mavlink.actions import (
    DRONE_RESOURCE,
    DRONE_WAYPOINT_ID,
    DRONE_WAYPOINT_VERSION,
    DroneActions,
)
from providers.mavlink.params import VEHICLES_ENV, VehicleAddress, Waypoint, WaypointParams

__all__ = [
    "DRONE_RESOURCE",
    "DRONE_WAYPOINT_ID",
    "DRONE_WAYPOINT_VERSION",
    "VEHICLES_ENV",
    "DroneActions",
    "VehicleAddress",
    "Waypoint",
    "WaypointParams",
]
