"""The one place where built-in connector types and capabilities are registered."""

from __future__ import annotations

from framework.consuming import CapabilityRegistry
from framework.polling import ConnectorRegistry
from providers.amqp import AMQP_SOURCE_TYPE, create_amqp_connector
from providers.datadog import create_datadog_connector
from providers.fleet import fleet_capabilities
from providers.github import create_github_connector
from providers.http import HttpActions, create_http_json_connector
from providers.jira import create_jira_connector
from providers.modbus import valve_control_spec
from providers.mqtt import MQTT_SOURCE_TYPE, create_mqtt_connector
from providers.noaa import create_noaa_weather_connector


def register_builtin_connectors(registry: ConnectorRegistry) -> None:
    registry.register_connector("NOAA_WEATHER", create_noaa_weather_connector)
    registry.register_connector("DATADOG", create_datadog_connector)
    registry.register_connector("HTTP_JSON", create_http_json_connector)
    registry.register_connector("JIRA", create_jira_connector)
    registry.register_connector("GITHUB", create_github_connector)
    registry.register_connector(MQTT_SOURCE_TYPE, create_mqtt_connector)
    registry.register_connector(AMQP_SOURCE_TYPE, create_amqp_connector)


def default_registry() -> ConnectorRegistry:
    """Built-in types plus every type installed through entry points."""
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    registry.load_entry_points()
    return registry


def register_builtin_capabilities(
    registry: CapabilityRegistry, *, http: HttpActions | None = None
) -> HttpActions:
    """``http_call``, ``webhook_call``, ``emit_event``, ``log`` and ``valve_control``
    (Modbus; valve address in the call's parameters); returns the
    HTTP actions' client holder, which the caller closes (``aclose``)."""
    http = http or HttpActions()
    for spec in [*http.specs(), *fleet_capabilities(), valve_control_spec()]:
        registry.register(spec)
    return http


def default_capability_registry(
    *, http: HttpActions | None = None
) -> tuple[CapabilityRegistry, HttpActions]:
    """Built-in capabilities plus every one installed through entry points."""
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, http=http)
    registry.load_entry_points()
    return registry, actions
