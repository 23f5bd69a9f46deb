"""Modbus TCP actuators: the ``valve_control`` capability (a valve is a coil)."""

from providers.modbus.valve import (
    VALVE_CONTROL_ID,
    VALVE_CONTROL_VERSION,
    VALVE_RESOURCE,
    ValveAddress,
    valve_control_spec,
)

__all__ = [
    "VALVE_CONTROL_ID",
    "VALVE_CONTROL_VERSION",
    "VALVE_RESOURCE",
    "ValveAddress",
    "valve_control_spec",
]
