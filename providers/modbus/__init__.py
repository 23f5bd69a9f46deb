"""Modbus TCP: the ``modbus-tcp`` source (registers of one or more slaves) and the
``valve_control`` capability (a valve is a coil)."""

from providers.modbus.settings import ModbusConfig, RegisterConfig, SlaveConfig
from providers.modbus.source import create_modbus_connector
from providers.modbus.valve import (
    VALVE_CONTROL_ID,
    VALVE_CONTROL_VERSION,
    VALVE_RESOURCE,
    ValveAddress,
    valve_control_spec,
)
from providers.modbus.words import decode, encode

__all__ = [
    "VALVE_CONTROL_ID",
    "VALVE_CONTROL_VERSION",
    "VALVE_RESOURCE",
    "ModbusConfig",
    "RegisterConfig",
    "SlaveConfig",
    "ValveAddress",
    "create_modbus_connector",
    "decode",
    "encode",
    "valve_control_spec",
]
