"""The ``mqtt-source`` connector type: MQTT messages as source events, appended
under the lease and acknowledged after the append (at least once).

An event per message: a JSON payload that is an object with a ``value`` gives
``value`` and, when present, ``unit``, ``timestamp``, ``nodeId`` and ``metadata``;
any other JSON document is the ``value`` itself. ``nodeId`` defaults to the
topic; ``metadata`` always carries the topic. A payload that is not JSON, or is
larger than ``maxMessageBytes``, is kept raw in the connector's rejected stream.

Duplicates: MQTT gives no message id that survives a reconnect (packet ids are
reused), so redeliveries are suppressed only when the publisher gives one, named
by ``dedupeField`` (a user property or a top-level field of the payload);
otherwise a message redelivered after a crash between the append and the PUBACK
is appended again.
"""

from __future__ import annotations

from typing import Any

import orjson

from framework import polling
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
)
from providers.mqtt.config import MqttSourceConfig
from providers.mqtt.source import MqttMessage, MqttSource

MQTT_SOURCE_TYPE = "mqtt-source"


class MqttEvents:
    """How one connector's messages become events, item ids and dedupe keys."""

    def __init__(self, settings: MqttSourceConfig) -> None:
        self._settings = settings

    def document(self, message: MqttMessage) -> Any:
        limit = self._settings.max_message_bytes
        if len(message.payload) > limit:
            raise ValueError(f"topic {message.topic}: payload of {len(message.payload)} bytes "
                             f"is over maxMessageBytes ({limit})")
        try:
            return orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"topic {message.topic}: payload is not JSON: {exc}") from None

    def event(self, message: MqttMessage) -> dict[str, Any]:
        document = self.document(message)
        metadata: dict[str, Any] = {"topic": message.topic}
        if message.retain:
            metadata["retain"] = True
        if not (isinstance(document, dict) and "value" in document):
            return polling.source_event(source=self._settings.source, value=document,
                                node_id=message.topic, metadata=metadata)
        extra = document.get("metadata")
        if extra is not None and not isinstance(extra, dict):
            raise ValueError(f"topic {message.topic}: metadata must be an object")
        return polling.source_event(
            source=self._settings.source, value=document["value"],
            node_id=_text(document, "nodeId", message) or message.topic,
            unit=_text(document, "unit", message),
            timestamp=_text(document, "timestamp", message),
            metadata={**(extra or {}), **metadata})

    def dedupe_key(self, message: MqttMessage) -> str | None:
        field = self._settings.dedupe_field
        if field is None:
            return None
        for name, given in message.user_properties:
            if name == field:
                return f"{message.topic}\n{given}"
        try:
            document = self.document(message)
        except ValueError:
            return None  # rejected anyway
        value = document.get(field) if isinstance(document, dict) else None
        return None if value is None or isinstance(value, dict | list) else (
            f"{message.topic}\n{value}")

    def item_id(self, message: MqttMessage) -> str:
        key = self.dedupe_key(message)
        return f"{message.topic}#{key.partition(chr(10))[2] if key else message.local_id}"


def _text(document: dict[str, Any], field: str, message: MqttMessage) -> str | None:
    value = document.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"topic {message.topic}: {field} must be a string")
    return value


def create_mqtt_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(MqttSourceConfig, config)
    source = MqttSource(settings, client_id=settings.client_id or f"connector-fleet-{config.name}",
                        connect_timeout_s=config.request_timeout_ms / 1000, logger=context.logger)
    events = MqttEvents(settings)
    parts = PushParts(source=source, item_id=events.item_id, transformer=events.event,
                      raw=lambda message: message.payload, dedupe_key=events.dedupe_key)
    return PushConnector[MqttMessage, dict[str, Any]](
        config=config, parts=parts, store=context.store, clock=context.clock,
        logger=context.logger)
