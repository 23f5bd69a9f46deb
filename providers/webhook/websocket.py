"""The WebSocket endpoint, for long-lived producers: one message is one event.

The connection is authenticated once, at the upgrade (API key or bearer token, or
none). Each text or binary message gets one answer, by its sequence number on the
connection (1, 2, ...): ``{"seq": n, "ack": itemId}`` once it is in the stream, or
``{"seq": n, "error": ..., "retry": bool}`` (not saved: ``retry`` true; refused:
false, with the schema errors in ``details``).

Backpressure: at most ``websocketMaxInFlight`` messages of a connection wait for
their commit; past that the server stops reading it until acknowledgements free a
slot, so a producer faster than the stream is slowed by TCP rather than buffered
without bound. A stop (lease lost, Redis down) closes every connection (1013, try
again later) after answering what was not saved.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from framework.core import RedisUnavailableError
from providers.webhook.auth import AuthError, Caller
from providers.webhook.handlers import Endpoint
from providers.webhook.intake import Delivery, IntakeError

WS_HEARTBEAT_S = 30.0


class WebSocketHandler:
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self.sockets: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = self._endpoint
        if not endpoint.inbox.accepting:
            return endpoint.unavailable("not accepting events now (the stream is unavailable)")
        try:
            caller = endpoint.caller_by_headers(request)
        except AuthError as exc:
            return endpoint.refuse(401, str(exc))
        assert caller is not None  # the config allows no signed mode here
        socket = web.WebSocketResponse(max_msg_size=endpoint.config.max_body_bytes,
                                       heartbeat=WS_HEARTBEAT_S)
        await socket.prepare(request)
        self.sockets.add(socket)
        try:
            await _Connection(endpoint, socket, caller).serve()
        finally:
            self.sockets.discard(socket)
        return socket

    async def close_all(self) -> None:
        for socket in list(self.sockets):
            await socket.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"stopped")


class _Connection:
    def __init__(self, endpoint: Endpoint, socket: web.WebSocketResponse, caller: Caller):
        self._endpoint = endpoint
        self._socket = socket
        self._caller = caller
        self._slots = asyncio.Semaphore(endpoint.config.websocket_max_in_flight)
        self._waiting: set[asyncio.Task[None]] = set()
        self._seq = 0

    async def serve(self) -> None:
        try:
            while not self._socket.closed:
                await self._slots.acquire()  # backpressure: no slot, no read
                message = await self._socket.receive()
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._slots.release()
                    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                        WSMsgType.ERROR):
                        return
                    continue
                self._seq += 1
                body = message.data if isinstance(message.data, bytes) else (
                    message.data.encode())
                await self._take(self._seq, body)
        finally:
            # Deliveries already queued are still appended; their answers have no
            # connection to go to.
            for task in self._waiting:
                task.cancel()

    async def _take(self, seq: int, body: bytes) -> None:
        endpoint = self._endpoint
        try:
            wait_s = await endpoint.over_limit(self._caller.client)
            if wait_s is not None:
                raise IntakeError(429, f"rate limit exceeded; retry after {wait_s} s")
            delivery = endpoint.intake.delivery(body, client=self._caller.client,
                                                dedupe_key=None, delivery_id=None)
        except IntakeError as exc:
            self._slots.release()
            await self._answer({"seq": seq, **exc.body(), "retry": exc.status == 429})
            return
        except RedisUnavailableError:
            self._slots.release()
            await self._answer({"seq": seq, "error": "not saved", "retry": True})
            return
        if not endpoint.inbox.offer(delivery):
            self._slots.release()
            await self._answer({"seq": seq, "error": "not accepting events now", "retry": True})
            return
        task = asyncio.create_task(self._acknowledge(seq, delivery))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _acknowledge(self, seq: int, delivery: Delivery) -> None:
        try:
            kept = await delivery.saved
        finally:
            self._slots.release()
        if kept:
            await self._answer({"seq": seq, "ack": delivery.item_id})
        else:
            await self._answer({"seq": seq, "error": "not saved", "retry": True})

    async def _answer(self, answer: dict[str, Any]) -> None:
        if not self._socket.closed:
            # The peer may have left; what was saved stays saved.
            with contextlib.suppress(ConnectionError):
                await self._socket.send_json(answer)
