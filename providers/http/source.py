"""The ``HTTP_JSON`` source: any JSON API by configuration alone.

The request (url, method, headers, params, body), where the items are
(``itemsPath``), which field is the id and which the version (``idField``,
``versionField``, or a content hash) and how to page (next link in the body,
Link header, page number, offset, cursor) are all providerConfig; see
:mod:`providers.http.source_config` and docs/providers.md for a complete example.

Every poll walks the pages from the first (a page already published is skipped
item by item by its version), so a page that fails mid-way loses nothing and
repeats nothing: the pages before it were committed, the next poll starts
over. ``maxPages`` bounds a poll; a poll that stops there prunes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from framework.core import Logger, MalformedResponseError
from framework.polling import (
    ConnectorState,
    FetchResult,
    HttpClient,
    HttpSourceType,
    PageRequest,
    SourceParts,
    SourceWiring,
    content_version,
    describe_shape,
    http_connector_factory,
    walk_pages,
)
from providers.http.source_config import HttpJsonConfig, NoPagination, compile_expression


class HttpJsonSource:
    def __init__(
        self, settings: HttpJsonConfig, http: HttpClient, *, logger: Logger, connector: str
    ) -> None:
        self.settings = settings
        self.http = http
        self._log = logger
        self._connector = connector
        self._items = compile_expression(settings.items_path)
        self._id = compile_expression(settings.id_field)
        self._version = (
            compile_expression(settings.version_field) if settings.version_field else None
        )
        self._fields = {name: compile_expression(e) for name, e in settings.fields.items()}
        self._paginator = settings.pagination.paginator()
        # The item the poller last asked the id and version of, with them: its
        # signal carries both, computed once (the poller asks id, version, signal
        # of one item in turn).
        self._last: tuple[Any, str, str | None] = (None, "", None)

    # -- items ---------------------------------------------------------------------------

    def item_id(self, item: Any) -> str:
        item_id = self._id_of(item)
        self._last = (item, item_id, None)
        return item_id

    def _id_of(self, item: Any) -> str:
        value = self._id.search(item)
        if value is None or value == "":
            raise ValueError(f"idField {self.settings.id_field!r} is empty for this item")
        if isinstance(value, dict | list):
            raise ValueError(f"idField {self.settings.id_field!r} gave a JSON "
                             f"{type(value).__name__}, not a string or number")
        return str(value)

    def version(self, item: Any) -> str:
        version = self._version_of(item)
        last, item_id, _ = self._last
        if last is item:
            self._last = (item, item_id, version)
        return version

    def _version_of(self, item: Any) -> str:
        if self._version is None:
            return content_version(item)
        value = self._version.search(item)
        if value is None:
            raise ValueError(f"versionField {self.settings.version_field!r} is null for this item")
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    def to_signal(self, item: Any) -> dict[str, Any]:
        """The :class:`HttpJsonItem` of ``item``, as the dict its JSON is made from
        (the item is JSON already: a model built and dumped per item costs more
        than the rest of the item's work)."""
        last, item_id, version = self._last
        if last is not item or version is None:
            item_id, version = self._id_of(item), self._version_of(item)
        return {
            "source": "http_json",
            "connector": self._connector,
            "id": item_id,
            "version": version,
            "fields": {name: path.search(item) for name, path in self._fields.items()},
            "item": item,
        }

    # -- pages ---------------------------------------------------------------------------

    async def pages(self, state: ConnectorState) -> AsyncIterator[FetchResult[Any]]:
        settings = self.settings
        single = isinstance(settings.pagination, NoPagination)
        first = PageRequest(
            str(settings.url), params=dict(settings.params), method=settings.method,
            headers=_conditional_headers(state) if single and settings.conditional else {},
            json=settings.body if settings.method == "POST" else None,
        )
        last = False
        async for page in walk_pages(self.http, self._paginator, first, read_items=self._items_of,
                                     connector=self._connector, max_pages=settings.max_pages):
            if page.not_modified:
                yield FetchResult(not_modified=True)
                return
            last = page.last
            yield FetchResult(
                items=page.items,
                complete=settings.complete and page.last,
                etag=page.response.headers.get("ETag") if single else None,
                last_modified=page.response.headers.get("Last-Modified") if single else None,
            )
        if not last:
            self._log.warning("max_pages_reached", max_pages=settings.max_pages)

    def _items_of(self, body: Any, request: PageRequest) -> list[Any]:
        items = self._items.search(body)
        if not isinstance(items, list):
            raise MalformedResponseError(
                f"{httpx.URL(request.url).path}: itemsPath {self.settings.items_path!r} gave "
                f"{describe_shape(items)}, not a list (body: {describe_shape(body)})",
                connector=self._connector,
            )
        return items


def _conditional_headers(state: ConnectorState) -> dict[str, str]:
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def _parts(
    settings: HttpJsonConfig, wiring: SourceWiring
) -> SourceParts[HttpJsonSource, Any, dict[str, Any]]:
    source = HttpJsonSource(settings, wiring.http, logger=wiring.context.logger,
                            connector=wiring.config.name)
    return SourceParts[HttpJsonSource, Any, dict[str, Any]](
        provider=source,
        page_fetcher=HttpJsonSource.pages,
        item_id=source.item_id,
        change_detector=source.version,
        transformer=source.to_signal,
    )


create_http_json_connector = http_connector_factory(HttpSourceType(
    settings=HttpJsonConfig, headers=HttpJsonConfig.request_headers, build=_parts))
