"""Modbus TCP: the ``modbus-tcp`` source (registers of one or more slaves), the
``modbus_write`` capability (registers and coils, read back) and ``valve_control``
(a valve is a coil)."""

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
from providers.modbus.write import (
    MODBUS_WRITE_ID,
    MODBUS_WRITE_RESOURCE,
    MODBUS_WRITE_VERSION,
    modbus_write_spec,
)

__all__ = [
    "MODBUS_WRITE_ID",
    "MODBUS_WRITE_RESOURCE",
    "MODBUS_WRITE_VERSION",
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
    "modbus_write_spec",
    "valve_control_spec",
]
