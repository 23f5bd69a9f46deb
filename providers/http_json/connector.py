"""The ``HTTP_JSON`` connector: any JSON API by configuration alone.

The request (url, method, headers, params, body), where the items are
(``itemsPath``), which field is the id and which the version (``idField``,
``versionField``, or a content hash) and how to page (next link in the body,
Link header, page number, offset, cursor) are all providerConfig; see
providers/http_json/config.py and docs/providers.md for a complete example.
"""

from __future__ import annotations

from typing import Any

from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    HttpClient,
    PollingConnector,
    UniversalPollingConnector,
    parse_provider_config,
)
from providers.http_json.config import HttpJsonConfig
from providers.http_json.schema import HttpJsonItem
from providers.http_json.source import HttpJsonSource


def create_http_json_connector(
    config: ConnectorConfig, context: ConnectorContext
) -> PollingConnector:
    settings = parse_provider_config(HttpJsonConfig, config)
    http = HttpClient(
        config,
        clock=context.clock,
        logger=context.logger,
        headers={"Accept": "application/json", **settings.headers},
        transport=context.http_transport,
    )
    source = HttpJsonSource(settings, http, logger=context.logger, connector=config.name)
    return UniversalPollingConnector[HttpJsonSource, Any, HttpJsonItem](
        config=config,
        provider=source,
        page_fetcher=HttpJsonSource.pages,
        item_id=source.item_id,
        change_detector=source.version,
        transformer=source.to_signal,
        store=context.store,
        logger=context.logger,
        on_close=http.aclose,
    )
