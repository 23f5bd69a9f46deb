"""OPC-UA (asyncua): the ``opcua-source`` connector type (subscription or polling) and
the ``opcua_write`` capability (write a node with its variant type, read back; call a
method)."""

from providers.opcua.config import EndpointConfig, OpcUaSourceConfig, SecurityConfig
from providers.opcua.connector import OPCUA_SOURCE_TYPE, create_opcua_connector

__all__ = [
    "OPCUA_SOURCE_TYPE",
    "EndpointConfig",
    "OpcUaSourceConfig",
    "SecurityConfig",
    "create_opcua_connector",
]
