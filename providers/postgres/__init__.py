"""``cdc-postgres``: row changes of PostgreSQL tables (logical decoding, pgoutput),
as events; see docs/cdc.md."""

from __future__ import annotations

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
    source_event,
)
from providers.postgres.events import change_value, item_id, metadata
from providers.postgres.session import Capture, describe_target
from providers.postgres.settings import CdcConfig, default_name
from providers.postgres.source import CdcSource, Row

__all__ = ["CdcConfig", "CdcSource", "create_cdc_connector"]


def create_cdc_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(CdcConfig, config)
    capture = Capture(
        url=settings.connection_url.get_secret_value(),
        slot=settings.slot or default_name(config.name),
        publication=settings.publication or default_name(config.name),
        tables=tuple(settings.qualified_tables()),
        create_slot=settings.create_slot, create_publication=settings.create_publication,
        max_change_bytes=settings.max_change_bytes)
    source = CdcSource(config, settings, capture, context.clock, context.logger)
    target = describe_target(capture.url)

    def event(row: Row) -> dict[str, object]:
        value = change_value(row.change, source.primary_keys.get(row.change.relation.table))
        return source_event(source="postgres", value=value,
                            node_id=f"{target}/{value['table']}",
                            timestamp=row.txn.committed_at, metadata=metadata(row))

    parts = PushParts(source=source, item_id=item_id, transformer=event,
                      raw=lambda row: row.change.raw)
    return PushConnector(config=config, parts=parts, store=context.store, clock=context.clock,
                         logger=context.logger)
