"""Paging through an HTTP list: the framework walks the pages, a source names its
first request, where a page's items are, and which :class:`Paginator` it pages by.

Paginators: :class:`SinglePage` (one answer holds everything), :class:`LinkHeader`
(RFC 8288 ``Link: <...>; rel="next"``), :class:`NextLink` (the next page's URL in
the body), :class:`CursorParam` (an opaque cursor in the body, sent back as a
query parameter), :class:`PageNumber` and :class:`Offset` (a page shorter than
its size, or empty, is the last).

Every walk refuses what would never end or would leak credentials: a next page
already read in this walk (a loop), and a next link to another origin (the
client's headers carry the source's credentials).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urljoin

import httpx

from framework.core.errors import MalformedResponseError
from framework.polling.http import HttpClient, read_json

Params = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class PageRequest:
    """One page's request. ``params`` None: the URL carries its whole query (a link).
    ``via`` names how the request was found, for the loop error."""

    url: str
    params: Params | None = None
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    via: str = field(default="first page", compare=False)

    def following(self, url: str, params: Params | None, *, via: str) -> PageRequest:
        """The next page's request: the same method and body, without the first
        page's conditional headers."""
        return replace(self, url=url, params=params, headers={}, via=via)

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.url, tuple(sorted((k, str(v)) for k, v in (self.params or {}).items()))


@dataclass(frozen=True)
class Page:
    """One page read, ``number`` from 1. ``last``: no page follows (the walk read
    everything); ``not_modified``: the first page answered 304 to its conditional
    headers."""

    number: int
    request: PageRequest
    response: httpx.Response
    items: list[Any]
    last: bool
    not_modified: bool = False


class BodyPath(Protocol):
    """A compiled expression that finds a value in a JSON body (a JMESPath one does)."""

    @property
    def expression(self) -> str: ...

    def search(self, value: Any) -> Any: ...


class Paginator(Protocol):
    def start(self, request: PageRequest) -> PageRequest:
        """The first request, with the paginator's own parameters added."""
        ...

    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        """The next page's request, or None after the last page."""
        ...


class _FirstPageAsGiven:
    def start(self, request: PageRequest) -> PageRequest:
        return request


class SinglePage(_FirstPageAsGiven):
    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        return None


class LinkHeader(_FirstPageAsGiven):
    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        link: Mapping[str, str] = response.links.get("next", {})
        return _follow_link(page, response, link.get("url"))


@dataclass(frozen=True)
class NextLink(_FirstPageAsGiven):
    url_path: BodyPath

    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        return _follow_link(page, response, search_string(self.url_path, body))


@dataclass(frozen=True)
class CursorParam(_FirstPageAsGiven):
    cursor_path: BodyPath
    param: str = "cursor"

    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        cursor = search_string(self.cursor_path, body)
        if not cursor:
            return None
        params = {**(page.params or {}), self.param: cursor}
        return page.following(page.url, params, via=f"cursor {cursor!r}")


@dataclass(frozen=True)
class _Counted:
    """Pages addressed by a counter in ``param``; ``size`` items per full page."""

    param: str
    size_param: str | None = None
    size: int | None = None

    def start(self, request: PageRequest) -> PageRequest:
        first: dict[str, str | int | float | bool] = {self.param: self.first_position()}
        if self.size_param and self.size:
            first[self.size_param] = self.size
        return replace(request, params={**(request.params or {}), **first})

    def next_request(
        self, page: PageRequest, response: httpx.Response, body: Any, items: list[Any]
    ) -> PageRequest | None:
        if not items or (self.size is not None and len(items) < self.size):
            return None
        params = dict(page.params or {})
        position = int(params[self.param]) + self.step(items)
        return page.following(page.url, {**params, self.param: position},
                              via=f"{self.param} {position}")

    def first_position(self) -> int:
        raise NotImplementedError

    def step(self, items: list[Any]) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class PageNumber(_Counted):
    param: str = "page"
    start_at: int = 1

    def first_position(self) -> int:
        return self.start_at

    def step(self, items: list[Any]) -> int:
        return 1


@dataclass(frozen=True)
class Offset(_Counted):
    """The offset moves by the items received."""

    param: str = "offset"

    def first_position(self) -> int:
        return 0

    def step(self, items: list[Any]) -> int:
        return len(items)


ItemsReader = Callable[[Any, PageRequest], list[Any]]


async def walk_pages(
    http: HttpClient, paginator: Paginator, first: PageRequest, *, read_items: ItemsReader,
    connector: str, max_pages: int | None = None,
) -> AsyncIterator[Page]:
    """Each page in turn, from ``first``, at most ``max_pages``. A page whose next
    request is refused is yielded (its items are fine, ``last`` False) before
    the :class:`MalformedResponseError` is raised."""
    request = paginator.start(first)
    read = {request.key()}
    count = 0
    while max_pages is None or count < max_pages:
        count += 1
        response = await http.request(request.method, request.url, params=request.params,
                                      headers=dict(request.headers), json=request.json)
        if response.status_code == 304:
            yield Page(count, request, response, [], last=True, not_modified=True)
            return
        body = await read_json(response, connector=connector)
        items = read_items(body, request)
        try:
            following = paginator.next_request(request, response, body, items)
            if following is not None:
                _refuse_loop(following, read, connector)
        except MalformedResponseError as exc:
            yield Page(count, request, response, items, last=False)
            if exc.connector is not None:
                raise
            raise MalformedResponseError(str(exc), connector=connector) from None
        yield Page(count, request, response, items, last=following is None)
        if following is None:
            return
        request = following


def search_string(path: BodyPath, body: Any) -> str | None:
    """The string (or number) ``path`` finds in ``body``; None for null or ""."""
    value = path.search(body)
    if value is None or value == "":
        return None
    if isinstance(value, dict | list | bool):
        raise MalformedResponseError(
            f"pagination expression {path.expression!r} gave a JSON "
            f"{type(value).__name__}, not a string")
    return str(value)


def _follow_link(
    page: PageRequest, response: httpx.Response, link: str | None
) -> PageRequest | None:
    if not link:
        return None
    target = urljoin(str(response.url), link)
    _refuse_foreign(page.url, target)
    return page.following(target, None, via=f"next link {target!r}")


def _refuse_foreign(origin_url: str, target: str) -> None:
    origin, link = httpx.URL(origin_url), httpx.URL(target)
    if (link.scheme, link.host, link.port) != (origin.scheme, origin.host, origin.port):
        raise MalformedResponseError(
            f"the next link leads to {link.scheme}://{link.host}, not to the configured "
            f"{origin.scheme}://{origin.host}; not followed")


def _refuse_loop(request: PageRequest, read: set[tuple[str, Any]], connector: str) -> None:
    if request.key() in read:
        raise MalformedResponseError(
            f"{httpx.URL(request.url).path}: pagination loops: the {request.via} leads to a "
            "page already read in this walk", connector=connector)
    read.add(request.key())
