"""A hostile HTTP peer on 127.0.0.1 for the HTTP-limit tests: each path is a
behaviour (trickle, endless body, redirect...) that writes its answer by hand, and
every request's headers are recorded."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Behaviour = Callable[[BaseHTTPRequestHandler], None]
_CHUNK = b"x" * 65_536


class HostileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.headers_by_path: dict[str, list[dict[str, str]]] = {}
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def count_sent(self, size: int) -> None:
        with self._lock:
            self.bytes_sent += size

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with server._lock:
                    server.headers_by_path.setdefault(path, []).append(
                        {k.lower(): v for k, v in self.headers.items()})
                behaviour = server.routes.get(path, not_found)
                # The client giving up (deadline, size limit) is the point of these tests.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    behaviour(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


def not_found(handler: BaseHTTPRequestHandler) -> None:
    json_answer(handler, b'{"message": "not found"}', status=404)


def json_answer(handler: BaseHTTPRequestHandler, body: bytes, *, status: int = 200,
                headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def trickle(body: bytes, *, byte_every_s: float) -> Behaviour:
    """A complete, valid answer whose body comes one byte at a time."""

    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for index in range(len(body)):
            handler.wfile.write(body[index : index + 1])
            handler.wfile.flush()
            time.sleep(byte_every_s)

    return behave


def endless(server: HostileServer, *, total_bytes: int, declare_length: bool,
            status: int = 200) -> Behaviour:
    """A body of ``total_bytes`` made on the fly (never held whole), chunked unless
    ``declare_length``; every byte written is counted in ``server.bytes_sent``."""

    def chunks() -> Iterator[bytes]:
        left = total_bytes
        while left > 0:
            piece = _CHUNK[: min(left, len(_CHUNK))]
            left -= len(piece)
            yield piece

    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(total_bytes))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for piece in chunks():
            if declare_length:
                handler.wfile.write(piece)
            else:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            server.count_sent(len(piece))
        if not declare_length:
            handler.wfile.write(b"0\r\n\r\n")

    return behave


def redirect(location: str, *, status: int = 302) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return behave
