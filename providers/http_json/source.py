"""Fetching a configured JSON API page by page, and reading ids, versions and
signals out of its items with the config's JMESPath expressions.

Every poll walks the pages from the first (a page already published is skipped
item by item by its version), so a page that fails mid-way loses nothing and
repeats nothing: the pages before it were committed, the next poll starts
over. ``maxPages`` bounds a poll; a poll that stops there prunes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urljoin

import httpx
import orjson
from jmespath.parser import ParsedResult

from framework.core import Logger, MalformedResponseError
from framework.polling import ConnectorState, FetchResult, HttpClient, content_version, parse_json
from providers.http_json.config import (
    CursorPagination,
    HttpJsonConfig,
    LinkHeaderPagination,
    NextLinkPagination,
    NoPagination,
    OffsetPagination,
    PagePagination,
    compile_expression,
)
from providers.http_json.schema import HttpJsonItem

Params = dict[str, str | int | float | bool]


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
        pagination = settings.pagination
        self._next_url = (
            compile_expression(pagination.next_url_path)
            if isinstance(pagination, NextLinkPagination) else None
        )
        self._cursor = (
            compile_expression(pagination.cursor_path)
            if isinstance(pagination, CursorPagination) else None
        )

    # -- items ---------------------------------------------------------------------------

    def item_id(self, item: Any) -> str:
        value = self._id.search(item)
        if value is None or value == "":
            raise ValueError(f"idField {self.settings.id_field!r} is empty for this item")
        if isinstance(value, dict | list):
            raise ValueError(f"idField {self.settings.id_field!r} gave a JSON "
                             f"{type(value).__name__}, not a string or number")
        return str(value)

    def version(self, item: Any) -> str:
        if self._version is None:
            return content_version(item)
        value = self._version.search(item)
        if value is None:
            raise ValueError(f"versionField {self.settings.version_field!r} is null for this item")
        return value if isinstance(value, str) else orjson.dumps(value).decode()

    def to_signal(self, item: Any) -> HttpJsonItem:
        return HttpJsonItem(
            connector=self._connector,
            id=self.item_id(item),
            version=self.version(item),
            fields={name: expression.search(item) for name, expression in self._fields.items()},
            item=item,
        )

    # -- pages ---------------------------------------------------------------------------

    async def pages(self, state: ConnectorState) -> AsyncIterator[FetchResult[Any]]:
        settings = self.settings
        single = isinstance(settings.pagination, NoPagination)
        url: str = str(settings.url)
        params: Params | None = {**settings.params, **self._first_page_params()}
        headers = self._conditional_headers(state) if single and settings.conditional else {}
        followed: set[str] = set()
        for _ in range(settings.max_pages):
            response = await self.http.request(
                settings.method, url, params=params, headers=headers,
                json=settings.body if settings.method == "POST" else None,
            )
            if response.status_code == 304:
                yield FetchResult(not_modified=True)
                return
            body = parse_json(response, connector=self._connector)
            items = self._items_of(body, url)
            try:
                following = self._next_request(response, body, items, params, followed)
            except MalformedResponseError:
                yield FetchResult(items=items, complete=False)  # the items are fine
                raise
            last = following is None
            yield FetchResult(
                items=items,
                complete=settings.complete and last,
                etag=response.headers.get("ETag") if single else None,
                last_modified=response.headers.get("Last-Modified") if single else None,
            )
            if following is None:
                return
            url, params = following
            headers = {}
        self._log.warning("max_pages_reached", max_pages=settings.max_pages)

    def _first_page_params(self) -> Params:
        pagination = self.settings.pagination
        first: Params = {}
        if isinstance(pagination, PagePagination):
            first[pagination.param] = pagination.start
        elif isinstance(pagination, OffsetPagination):
            first[pagination.param] = 0
        if isinstance(pagination, PagePagination | OffsetPagination) and (
            pagination.size_param and pagination.size
        ):
            first[pagination.size_param] = pagination.size
        return first

    @staticmethod
    def _conditional_headers(state: ConnectorState) -> dict[str, str]:
        headers = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        return headers

    def _items_of(self, body: Any, url: str) -> list[Any]:
        items = self._items.search(body)
        if not isinstance(items, list):
            raise MalformedResponseError(
                f"{_path(url)}: itemsPath {self.settings.items_path!r} gave "
                f"{_shape(items)}, not a list (body: {_shape(body)})",
                connector=self._connector,
            )
        return items

    def _next_request(
        self, response: httpx.Response, body: Any, items: list[Any], params: Params | None,
        followed: set[str],
    ) -> tuple[str, Params | None] | None:
        """The next page's URL and params, or None after the last page."""
        pagination = self.settings.pagination
        here = str(response.url)
        if isinstance(pagination, NextLinkPagination | LinkHeaderPagination):
            link = (
                _next_link_header(response) if isinstance(pagination, LinkHeaderPagination)
                else self._search_string(self._next_url, body)
            )
            if not link:
                return None
            target = urljoin(here, link)
            self._refuse_foreign(target)
            self._refuse_loop(target, followed, "next link")
            return target, None  # the link carries its whole query
        current: Params = dict(params or {})
        if isinstance(pagination, CursorPagination):
            cursor = self._search_string(self._cursor, body)
            if not cursor:
                return None
            self._refuse_loop(cursor, followed, "cursor")
            return str(self.settings.url), {**current, pagination.param: cursor}
        if isinstance(pagination, PagePagination | OffsetPagination):
            if not items or (pagination.size is not None and len(items) < pagination.size):
                return None
            step = 1 if isinstance(pagination, PagePagination) else len(items)
            position = int(current[pagination.param]) + step
            return str(self.settings.url), {**current, pagination.param: position}
        return None

    def _search_string(self, expression: ParsedResult | None, body: Any) -> str | None:
        if expression is None:
            return None
        value = expression.search(body)
        if value is None or value == "":
            return None
        if isinstance(value, dict | list | bool):
            raise MalformedResponseError(
                f"pagination expression {expression.expression!r} gave a JSON "
                f"{type(value).__name__}, not a string",
                connector=self._connector,
            )
        return str(value)

    def _refuse_foreign(self, target: str) -> None:
        # The configured headers (credentials) must not travel to another host.
        origin, link = httpx.URL(str(self.settings.url)), httpx.URL(target)
        if (link.scheme, link.host, link.port) != (origin.scheme, origin.host, origin.port):
            raise MalformedResponseError(
                f"the next link leads to {link.scheme}://{link.host}, not to the configured "
                f"{origin.scheme}://{origin.host}; not followed",
                connector=self._connector,
            )

    def _refuse_loop(self, key: str, followed: set[str], what: str) -> None:
        if key in followed:
            raise MalformedResponseError(
                f"pagination loops: the {what} {key!r} was already followed in this poll",
                connector=self._connector,
            )
        followed.add(key)


def _next_link_header(response: httpx.Response) -> str | None:
    link: Mapping[str, str] = response.links.get("next", {})
    return link.get("url")


def _path(url: str) -> str:
    return httpx.URL(url).path


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "an object with keys " + ", ".join(sorted(value)[:8]) if value else "{}"
    if value is None:
        return "null"
    return f"a JSON {type(value).__name__}"
