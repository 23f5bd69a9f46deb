"""The one place where built-in connector types and capabilities are registered."""

from __future__ import annotations

from dataclasses import dataclass

from framework.consuming import CapabilityRegistry
from framework.polling import ConnectorRegistry
from providers.datadog import create_datadog_connector
from providers.fleet import fleet_capabilities
from providers.github import create_github_connector
from providers.http import HttpActions, create_http_json_connector
from providers.jira import create_jira_connector
from providers.kafka import KAFKA_SOURCE_TYPE, KafkaActions, create_kafka_source_connector
from providers.modbus import valve_control_spec
from providers.noaa import create_noaa_weather_connector


def register_builtin_connectors(registry: ConnectorRegistry) -> None:
    registry.register_connector("NOAA_WEATHER", create_noaa_weather_connector)
    registry.register_connector("DATADOG", create_datadog_connector)
    registry.register_connector("HTTP_JSON", create_http_json_connector)
    registry.register_connector("JIRA", create_jira_connector)
    registry.register_connector("GITHUB", create_github_connector)
    registry.register_connector(KAFKA_SOURCE_TYPE, create_kafka_source_connector)


def default_registry() -> ConnectorRegistry:
    """Built-in types plus every type installed through entry points."""
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    registry.load_entry_points()
    return registry


@dataclass(frozen=True)
class BuiltinActions:
    """The clients the built-in capabilities hold (the HTTP pool, Kafka producers):
    whoever registered them closes them (``aclose``)."""

    http: HttpActions
    kafka: KafkaActions

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.kafka.aclose()


def register_builtin_capabilities(
    registry: CapabilityRegistry, *, http: HttpActions | None = None,
    kafka: KafkaActions | None = None,
) -> BuiltinActions:
    """``http_call``, ``webhook_call``, ``emit_event``, ``log``, ``valve_control``
    (Modbus; valve address in the call's parameters) and ``kafka_publish``; returns
    the clients they hold, which the caller closes (``aclose``)."""
    actions = BuiltinActions(http=http or HttpActions(), kafka=kafka or KafkaActions())
    for spec in [*actions.http.specs(), *fleet_capabilities(), valve_control_spec(),
                 *actions.kafka.specs()]:
        registry.register(spec)
    return actions


def default_capability_registry(
    *, http: HttpActions | None = None, kafka: KafkaActions | None = None,
) -> tuple[CapabilityRegistry, BuiltinActions]:
    """Built-in capabilities plus every one installed through entry points."""
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, http=http, kafka=kafka)
    registry.load_entry_points()
    return registry, actions
