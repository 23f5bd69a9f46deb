"""The one place where built-in connector types are registered."""

from __future__ import annotations

from framework.registry import ConnectorRegistry
from providers.noaa import create_noaa_weather_connector


def register_builtin_connectors(registry: ConnectorRegistry) -> None:
    registry.register_connector("NOAA_WEATHER", create_noaa_weather_connector)


def default_registry() -> ConnectorRegistry:
    """Built-in types plus every type installed through entry points."""
    registry = ConnectorRegistry()
    register_builtin_connectors(registry)
    registry.load_entry_points()
    return registry
