"""``email-imap``: new mail in an IMAP folder, as events."""

from __future__ import annotations

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    DedupeWindow,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
    source_event,
)
from providers.imap.message import Mail
from providers.imap.settings import ImapConfig
from providers.imap.source import ImapSource

__all__ = ["ImapConfig", "ImapSource", "create_imap_connector"]


def create_imap_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(ImapConfig, config)
    source = ImapSource(config, settings, context.clock, context.logger)
    node = f"{settings.username}@{settings.host}/{settings.folder}"

    def event(mail: Mail) -> dict[str, object]:
        return source_event(source="imap", value=source.event_value(mail), node_id=node,
                            metadata={"uid": mail.uid, "folder": settings.folder})

    parts = PushParts(source=source, item_id=lambda mail: f"{settings.folder}/{mail.uid}",
                      transformer=event, raw=lambda mail: mail.raw,
                      dedupe_key=source.dedupe_key,
                      window=DedupeWindow(ms=settings.dedupe_window_ms), max_batch=50)
    return PushConnector(config=config, parts=parts, store=context.store, clock=context.clock,
                         logger=context.logger)
