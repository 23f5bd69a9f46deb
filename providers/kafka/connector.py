"""The ``kafka-source`` connector type: a :class:`KafkaSource` under the push
connector (one fenced commit per batch: the entries and the partitions' next
offsets together). See :mod:`providers.kafka.config` for how partitions map to
instances and :mod:`providers.kafka.source` for the resume rules."""

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
from providers.kafka.config import KafkaSourceConfig
from providers.kafka.events import Record, RecordEvents, record_item_id, record_raw
from providers.kafka.source import KafkaSource, KafkaSourceDeps

KAFKA_SOURCE_TYPE = "kafka-source"


def create_kafka_source_connector(
    config: ConnectorConfig, context: ConnectorContext
) -> PollingConnector:
    settings = parse_provider_config(KafkaSourceConfig, config)
    settings.client_options()  # TLS files that cannot be used are a config error now
    deps = KafkaSourceDeps(connector=config.name, request_timeout_ms=config.request_timeout_ms,
                           clock=context.clock, logger=context.logger)
    events = RecordEvents(value_format=settings.value_format, source=settings.source,
                          max_message_bytes=settings.max_message_bytes)
    # No dedupe keys: the saved offsets already say what the stream holds, and an
    # offset is not unique across a topic's life (a recreated topic starts over).
    parts = PushParts[Record, dict[str, Any]](
        source=KafkaSource(settings, deps), item_id=record_item_id, transformer=events,
        raw=record_raw)
    return PushConnector(config=config, parts=parts, store=context.store, clock=context.clock,
                         logger=context.logger)
