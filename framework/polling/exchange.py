"""One HTTP exchange under a connector's limits: redirects followed without the
source's credentials across origins, and the body streamed against a size limit.

Redirects: a hop to the same origin (scheme, host, port; or an upgrade from http
to https on the same host) keeps every header. A hop to another origin keeps only
:data:`CROSS_ORIGIN_HEADERS`, which carry no credentials: ``Authorization``,
``Cookie`` and every custom header (``X-Api-Key``, ``DD-API-KEY``,
``PRIVATE-TOKEN``...) are dropped, as browsers drop ``Authorization``, and never
come back on a later hop. 303 (and 301/302 after a POST) become a GET without
its body, as browsers do.

Body: a declared ``Content-Length`` over the limit is refused before reading; any
other body is read chunk by chunk (decoded, which is what takes memory) and
refused as soon as it passes the limit, so at most the limit plus one chunk is
ever held. The body read is kept as the chunks it came in (:class:`ReadResponse`):
joining tens of MB into one ``bytes`` is one copy that holds the event loop, which
a reader of big bodies (:func:`~framework.polling.json_slices.loads_in_slices`)
avoids by reading :func:`body_chunks`; ``content`` joins them when first asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from framework.core.errors import PermanentSourceError, ResponseTooLargeError

MAX_REDIRECTS = 10
CROSS_ORIGIN_HEADERS = frozenset({"accept", "accept-encoding", "accept-language", "user-agent"})
_BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")
# What describes the body as it came over the wire; the body handed on is decoded.
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
_KEPT_EXTENSIONS = ("http_version", "reason_phrase")

# Tells what a redirect did: (from origin, to origin, names of the dropped headers).
RedirectObserver = Callable[[str, str, list[str]], None]


async def exchange(
    client: httpx.AsyncClient, request: httpx.Request, *, max_body_bytes: int,
    connector: str | None = None, on_cross_origin: RedirectObserver | None = None,
) -> httpx.Response:
    """Send ``request``, follow its redirects (see module docstring) and return the
    final response with its whole body read (at most ``max_body_bytes``)."""
    for _ in range(MAX_REDIRECTS + 1):
        response = await client.send(request, stream=True)
        if not response.has_redirect_location:
            return await read_limited(response, max_body_bytes, connector=connector)
        await response.aclose()
        request = _redirected(request, response, connector, on_cross_origin)
    raise PermanentSourceError(
        f"{request.method} {_origin(request.url)}{request.url.path}: more than "
        f"{MAX_REDIRECTS} redirects; not followed further", connector=connector)


async def read_limited(
    response: httpx.Response, max_body_bytes: int, *, connector: str | None = None
) -> httpx.Response:
    """``response`` (opened with ``stream=True``) with its body read, or
    :class:`ResponseTooLargeError` once the body passes ``max_body_bytes``."""
    what = f"{response.request.method} {_origin(response.request.url)}{response.request.url.path}"
    try:
        declared = response.headers.get("content-length", "")
        # A compressed body's length says nothing certain about its decoded size.
        if declared.isdigit() and int(declared) > max_body_bytes \
                and "content-encoding" not in response.headers:
            raise ResponseTooLargeError(
                f"{what}: the body (Content-Length {declared}) is over maxBodyBytes="
                f"{max_body_bytes}; not read", connector=connector)
        chunks: list[bytes] = []
        size = 0
        # Read by chunk (not in one piece): see the module docstring.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_body_bytes:
                raise ResponseTooLargeError(
                    f"{what}: the body is over maxBodyBytes={max_body_bytes}; "
                    f"stopped reading at {size} bytes", connector=connector)
            chunks.append(chunk)
    finally:
        await response.aclose()
    return _with_body(response, chunks, size)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Same scheme, host and port (httpx leaves a scheme's default port out)."""
    return (url.scheme, url.host, url.port) == (other.scheme, other.host, other.port)


def _redirected(
    request: httpx.Request, response: httpx.Response, connector: str | None,
    on_cross_origin: RedirectObserver | None,
) -> httpx.Request:
    url = request.url.join(response.headers["location"])
    if url.scheme not in ("http", "https"):
        raise PermanentSourceError(
            f"{request.method} {_origin(request.url)}{request.url.path}: redirect to a "
            f"{url.scheme or 'relative'} URL; not followed", connector=connector)
    method = _redirect_method(request.method, response.status_code)
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)
    content: bytes | None = request.content if method == request.method else None
    if content is None:
        for name in _BODY_HEADERS:
            headers.pop(name, None)
    if not (same_origin(url, request.url) or _is_https_upgrade(request.url, url)):
        dropped = sorted({k.lower() for k in headers if k.lower() not in CROSS_ORIGIN_HEADERS})
        headers = httpx.Headers({k: v for k, v in headers.items()
                                 if k.lower() in CROSS_ORIGIN_HEADERS})
        if on_cross_origin is not None:
            on_cross_origin(_origin(request.url), _origin(url), dropped)
    return httpx.Request(method, url, headers=headers, content=content,
                         extensions=request.extensions)


def _redirect_method(method: str, status: int) -> str:
    if status == httpx.codes.SEE_OTHER and method != "HEAD":
        return "GET"
    if status in (httpx.codes.MOVED_PERMANENTLY, httpx.codes.FOUND) and method == "POST":
        return "GET"
    return method


def _is_https_upgrade(old: httpx.URL, new: httpx.URL) -> bool:
    return (old.scheme, new.scheme) == ("http", "https") and old.host == new.host \
        and old.port in (None, 80) and new.port in (None, 443)


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def body_chunks(response: httpx.Response) -> Sequence[bytes]:
    """The body of a response that was read, without joining it into one piece."""
    if isinstance(response, ReadResponse):
        return response.chunks
    return (response.content,)


class ReadResponse(httpx.Response):
    """A response whose body was read whole and is kept as ``chunks``: the
    ``content`` that httpx's ``content``, ``text``, ``json()``, ``read()`` and
    ``iter_bytes()`` serve is joined from them the first time one of them is used."""

    def __init__(self, status_code: int, *, chunks: Sequence[bytes], size: int,
                 headers: list[tuple[str, str]], request: httpx.Request,
                 extensions: dict[str, Any]) -> None:
        self.chunks = tuple(chunks)
        self._joined: bytes | None = None
        headers = [*headers, ("content-length", str(size))]
        # A stream is given so that httpx neither reads it nor adds headers; the body
        # is served by ``_content`` below, and nothing is left to read or close.
        super().__init__(status_code, headers=headers, stream=httpx.ByteStream(b""),
                         request=request, extensions=extensions)
        self.is_stream_consumed = self.is_closed = True

    # httpx reads and writes the body it serves in ``_content`` (once read, every
    # accessor uses it): the join is made on the first of those reads.
    @property
    def _content(self) -> bytes:
        if self._joined is None:
            self._joined = b"".join(self.chunks)
        return self._joined

    @_content.setter
    def _content(self, value: bytes) -> None:
        self._joined = value


def _with_body(response: httpx.Response, chunks: list[bytes], size: int) -> ReadResponse:
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in _WIRE_HEADERS]
    extensions = {k: response.extensions[k] for k in _KEPT_EXTENSIONS
                  if k in response.extensions}
    return ReadResponse(response.status_code, chunks=chunks, size=size, headers=headers,
                        request=response.request, extensions=extensions)
