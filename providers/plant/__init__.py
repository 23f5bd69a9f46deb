"""Plant actuators over Modbus TCP or OPC-UA: ``pump_control`` (start, stop, speed,
interlocks as preconditions) and ``irrigation_control`` (a zone's valve open for a
bounded time, its close a durable scheduled step swept by every consumer)."""

from providers.plant.actions import PlantActions
from providers.plant.irrigation import (
    IRRIGATION_CONTROL_ID,
    IRRIGATION_CONTROL_VERSION,
    IRRIGATION_RESOURCE,
    irrigation_control_spec,
)
from providers.plant.pump import (
    PUMP_CONTROL_ID,
    PUMP_CONTROL_VERSION,
    PUMP_RESOURCE,
    pump_control_spec,
)
from providers.plant.schedule import CLOSES_KEY, CloseSchedule
from providers.plant.settings import Device, PlantSettings, Point, Pump, Zone
from providers.plant.sweeper import CloseSweeper

__all__ = [
    "CLOSES_KEY",
    "IRRIGATION_CONTROL_ID",
    "IRRIGATION_CONTROL_VERSION",
    "IRRIGATION_RESOURCE",
    "PUMP_CONTROL_ID",
    "PUMP_CONTROL_VERSION",
    "PUMP_RESOURCE",
    "CloseSchedule",
    "CloseSweeper",
    "Device",
    "PlantActions",
    "PlantSettings",
    "Point",
    "Pump",
    "Zone",
    "irrigation_control_spec",
    "pump_control_spec",
]
