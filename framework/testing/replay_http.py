"""An HTTP server on 127.0.0.1 that replays recorded API responses.

Runs in a background thread, so async tests and connector subprocesses can
both call it. Each path has a queue of replies; the last one repeats. A reply
with an ``etag`` answers 304 when the request's If-None-Match matches, as
the real APIs do.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # bytes/str sent as is; anything else as JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None
    delay_s: float = 0.0
    content_type: str = "application/json"

    @classmethod
    def from_file(cls, path: Path | str, **kwargs: Any) -> Reply:
        return cls(body=Path(path).read_bytes(), **kwargs)

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)


Responder = Reply | Callable[[RecordedRequest], Reply]


class ReplayServer:
    def __init__(self) -> None:
        self._routes: dict[str, list[Responder]] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, path: str, *replies: Responder) -> None:
        """Answer ``path`` with ``replies`` in turn, the last one for ever after."""
        with self._lock:
            self._routes[path] = list(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            queue = self._routes.get(request.path)
            if not queue:
                return Reply(404, {"title": "Not Found", "status": 404})
            responder = queue.pop(0) if len(queue) > 1 else queue[0]
        return responder(request) if callable(responder) else responder

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_PUT(self) -> None:
                self._answer()

            def do_PATCH(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = RecordedRequest(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                reply = server._next_reply(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                not_modified = reply.etag is not None and (
                    request.headers.get("if-none-match") == reply.etag
                )
                body = b"" if not_modified else reply.encoded_body()
                self.send_response(304 if not_modified else reply.status)
                if reply.etag is not None:
                    self.send_header("ETag", reply.etag)
                if not not_modified:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # A client that gave up (timed out, or stopped) is no error of ours.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read server.requests instead

        return Handler

    def start(self) -> ReplayServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
