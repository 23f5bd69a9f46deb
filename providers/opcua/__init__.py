"""OPC-UA (asyncua): the ``opcua-source`` connector type (subscription or polling) and
the ``opcua_write`` capability (write a node with its variant type, read back; call a
method)."""

from providers.opcua.config import EndpointConfig, OpcUaSourceConfig, SecurityConfig
from providers.opcua.connector import OPCUA_SOURCE_TYPE, create_opcua_connector
from providers.opcua.write import (
    OPCUA_WRITE_ID,
    OPCUA_WRITE_RESOURCE,
    OPCUA_WRITE_VERSION,
    opcua_write_spec,
)
from providers.opcua.write_params import endpoints_from_env

__all__ = [
    "OPCUA_SOURCE_TYPE",
    "OPCUA_WRITE_ID",
    "OPCUA_WRITE_RESOURCE",
    "OPCUA_WRITE_VERSION",
    "EndpointConfig",
    "OpcUaSourceConfig",
    "SecurityConfig",
    "create_opcua_connector",
    "endpoints_from_env",
    "opcua_write_spec",
]
