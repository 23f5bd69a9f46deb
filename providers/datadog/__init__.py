"""Datadog events (type ``DATADOG``): monitor alerts, deploys, changes, by time window."""

from providers.datadog.connector import DatadogConfig, create_datadog_connector
from providers.datadog.schema import DatadogEvent

__all__ = ["DatadogConfig", "DatadogEvent", "create_datadog_connector"]
