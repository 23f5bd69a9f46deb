"""The ``amqp-source`` connector type: AMQP messages as source events, appended
under the lease and acknowledged after the append (at least once).

Events are built from JSON bodies as for every broker (:mod:`providers.message_events`);
``nodeId`` defaults to the routing key (the queue's name when it is empty).

Duplicates: a message with a ``message_id`` property is appended once within the
dedupe window, so a redelivery after a crash between the append and the ack is
dropped; one without is appended again.

Poison: a body that is not JSON (or is too large) is kept raw in the rejected
stream and acknowledged with its batch, so it never comes back. A message the
broker has delivered more than ``maxDeliveries`` times (quorum queues count, in
``x-delivery-count``; for classic queues the connector counts redeliveries in
Redis, :mod:`providers.amqp.deliveries`) is kept there too, with why, and logged
(``amqp_poison_message``), then acknowledged: a message that keeps its batch from
being appended (or the process alive) therefore stops coming back. A redelivered
message is appended alone, so only the poison's count grows.
"""

from __future__ import annotations

from typing import Any

from framework.core import Logger
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
)
from providers.amqp.config import AmqpSourceConfig
from providers.amqp.deliveries import DeliveryCounts
from providers.amqp.source import AmqpMessage, AmqpSource
from providers.message_events import JsonBodies

AMQP_SOURCE_TYPE = "amqp-source"


class AmqpEvents:
    """How one connector's messages become events, item ids and dedupe keys."""

    def __init__(self, settings: AmqpSourceConfig, logger: Logger) -> None:
        self._settings = settings
        self._bodies = JsonBodies(settings.source, settings.max_message_bytes)
        self._log = logger

    def event(self, message: AmqpMessage) -> dict[str, Any]:
        settings = self._settings
        where = f"queue {settings.queue}"
        limit = settings.max_deliveries
        if limit and message.deliveries is not None and message.deliveries > limit:
            self._log.warning("amqp_poison_message", queue=settings.queue,
                              message_id=message.message_id, deliveries=message.deliveries)
            raise ValueError(f"{where}: delivered {message.deliveries} times, more than "
                             f"maxDeliveries ({limit}): kept as poison")
        metadata: dict[str, Any] = {"queue": settings.queue, "exchange": message.exchange,
                                    "routingKey": message.routing_key}
        if message.message_id:
            metadata["messageId"] = message.message_id
        if message.redelivered:
            metadata["redelivered"] = True
        return self._bodies.event(message.body, where=where,
                                  node_id=message.routing_key or settings.queue,
                                  metadata=metadata)

    def item_id(self, message: AmqpMessage) -> str:
        return f"{self._settings.queue}#{message.message_id or message.local_id}"

    @staticmethod
    def dedupe_key(message: AmqpMessage) -> str | None:
        return message.message_id


def create_amqp_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(AmqpSourceConfig, config)
    counts = (DeliveryCounts(context.store.redis, f"{context.store.keys.state}:deliveries")
              if settings.max_deliveries else None)
    source = AmqpSource(settings, connect_timeout_s=config.request_timeout_ms / 1000,
                        logger=context.logger, counts=counts)
    events = AmqpEvents(settings, context.logger)
    parts = PushParts(source=source, item_id=events.item_id, transformer=events.event,
                      raw=lambda message: message.body, dedupe_key=events.dedupe_key,
                      max_batch=max(settings.prefetch, 1))
    return PushConnector[AmqpMessage, dict[str, Any]](
        config=config, parts=parts, store=context.store, clock=context.clock,
        logger=context.logger)
