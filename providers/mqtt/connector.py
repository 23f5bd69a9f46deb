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
is appended again. At QoS 2 the broker's packet ids serve instead: they are saved
with the append until PUBREL (:mod:`providers.mqtt.qos2`), so nothing is appended
twice.
"""

from __future__ import annotations

from typing import Any

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
)
from providers.message_events import JsonBodies
from providers.mqtt.config import MqttSourceConfig
from providers.mqtt.source import MqttMessage, MqttSource

MQTT_SOURCE_TYPE = "mqtt-source"


class MqttEvents:
    """How one connector's messages become events, item ids and dedupe keys."""

    def __init__(self, settings: MqttSourceConfig) -> None:
        self._settings = settings
        self._bodies = JsonBodies(settings.source, settings.max_message_bytes)

    def event(self, message: MqttMessage) -> dict[str, Any]:
        metadata: dict[str, Any] = {"topic": message.topic}
        if message.retain:
            metadata["retain"] = True
        return self._bodies.event(message.payload, where=f"topic {message.topic}",
                                  node_id=message.topic, metadata=metadata)

    def publisher_id(self, message: MqttMessage) -> str | None:
        """``dedupeField``: from a user property, else from the JSON body."""
        field = self._settings.dedupe_field
        if field is None:
            return None
        for name, given in message.user_properties:
            if name == field:
                return given
        return self._bodies.field(message.payload, field)

    def dedupe_key(self, message: MqttMessage) -> str | None:
        given = self.publisher_id(message)
        return None if given is None else f"{message.topic}\n{given}"

    def item_id(self, message: MqttMessage) -> str:
        return f"{message.topic}#{self.publisher_id(message) or message.local_id}"


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
