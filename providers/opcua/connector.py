"""The ``opcua-source`` connector type: in ``subscription`` mode a push source (the
server reports data changes; :mod:`providers.opcua.subscription`), in ``polling``
mode a poller (:mod:`providers.opcua.polling`). Both publish the same events
(:mod:`providers.opcua.events`)."""

from __future__ import annotations

from typing import Any

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    SourceParts,
    UniversalPollingConnector,
    parse_provider_config,
)
from providers.opcua.config import OpcUaSourceConfig
from providers.opcua.events import OpcUaEvents, Reading
from providers.opcua.polling import OpcUaPoller, Polled, polled_version
from providers.opcua.subscription import OpcUaSubscriptionSource

OPCUA_SOURCE_TYPE = "opcua-source"


def create_opcua_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(OpcUaSourceConfig, config)
    events = OpcUaEvents(settings.source, settings.endpoint, settings.max_value_bytes)
    timeout_s = config.request_timeout_ms / 1000
    if settings.mode == "polling":
        poller = OpcUaPoller(settings, timeout_s=timeout_s, logger=context.logger)
        polled: SourceParts[None, Polled, dict[str, Any]] = SourceParts(
            provider=None, fetcher=poller.fetch, item_id=lambda item: item.node_id,
            transformer=lambda item: events.event(_reading(item)),
            change_detector=polled_version)
        return UniversalPollingConnector(config=config, parts=polled, store=context.store,
                                         logger=context.logger, on_close=poller.aclose)
    source = OpcUaSubscriptionSource(settings, timeout_s=timeout_s, logger=context.logger)
    parts = PushParts(source=source, item_id=Reading.item_id, transformer=events.event,
                      raw=events.raw, dedupe_key=Reading.key)
    return PushConnector[Reading, dict[str, Any]](
        config=config, parts=parts, store=context.store, clock=context.clock,
        logger=context.logger)


def _reading(item: Polled) -> Reading:
    assert item.reading is not None  # a failed item is never transformed
    return item.reading
