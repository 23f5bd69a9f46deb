"""An HTTP target for capability tests: aiohttp on 127.0.0.1 in the test's loop,
recording every request (with its raw body) and answering scripted replies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    # The test's clock reading when the request arrived (None without a clock).
    at_s: float | None = None

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class TargetReply:
    status: int = 200
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpTarget:
    """``async with HttpTarget() as target``: ``target.url``, ``target.received``."""

    def __init__(self, *, now_s: Callable[[], float] | None = None) -> None:
        self._now_s = now_s
        self._replies: dict[str, list[TargetReply]] = {}
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def reply(self, path: str, *replies: TargetReply) -> None:
        """Answer ``path`` with ``replies`` in turn, the last one for ever after."""
        self._replies[path] = list(replies)

    def received_at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(
            request.method, request.path, dict(request.headers), await request.read(),
            dict(request.query), self._now_s() if self._now_s else None,
        ))
        replies = self._replies.get(request.path) or [TargetReply(404, {"error": "no route"})]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        body = orjson.dumps(reply.json) if reply.json is not None else b""
        return web.Response(status=reply.status, body=body, headers=reply.headers,
                            content_type="application/json")

    async def __aenter__(self) -> HttpTarget:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # bound
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
