"""The webhook receiver as a push source: an aiohttp server on the connector's own
port (``providerConfig.host``/``port``) feeding an :class:`Inbox`.

The server starts listening at the first ``start`` (after the lease is taken, so
``config check`` and standbys bind nothing) and keeps listening until the connector
is closed: between a ``stop`` (lease lost, Redis down) and the next ``start`` it
answers 503 with ``Retry-After``, which a load balancer's health check and every
webhook sender understand, instead of refusing connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from framework.core import Logger, RateLimitedError
from framework.polling import Batch
from providers.webhook.handlers import Endpoint, HttpHandler
from providers.webhook.intake import Delivery
from providers.webhook.websocket import WebSocketHandler

# A port that cannot be bound (taken, not permitted) is tried again after this long.
LISTEN_RETRY_S = 5.0
# Handlers still running when the server closes are given this long.
SHUTDOWN_TIMEOUT_S = 5.0
KEEPALIVE_TIMEOUT_S = 75.0


class CannotListenError(RateLimitedError):
    """The port cannot be bound. A rate-limit error for the worker's sake: its retry
    delay makes the next window wait instead of trying again at once, in a loop."""


class WebhookReceiver:
    """A :class:`~framework.polling.PushSource` of deliveries (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, logger: Logger) -> None:
        self._endpoint = endpoint
        self._inbox = endpoint.inbox
        self._log = logger
        self._websockets = WebSocketHandler(endpoint)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def pending(self) -> int:
        """Deliveries waiting for their commit."""
        return self._inbox.pending

    async def start(self, positions: Mapping[str, str]) -> None:
        if self._runner is None:
            await self._listen()
        await self._inbox.start(positions)

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Delivery]:
        return await self._inbox.receive(max_messages, wait_s)

    async def acknowledge(self, batch: Batch[Delivery]) -> None:
        await self._inbox.acknowledge(batch)

    async def stop(self) -> None:
        await self._inbox.stop()
        await asyncio.sleep(0)  # the WebSocket answers of what was not saved go out first
        await self._websockets.close_all()

    async def close(self) -> None:
        """Stop and stop listening (the connector is closed)."""
        await self.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self._log.info("webhook_stopped_listening", port=self.port)

    async def _listen(self) -> None:
        config = self._endpoint.config
        app = web.Application(client_max_size=config.max_body_bytes)
        app.router.add_route(config.method, config.path, HttpHandler(self._endpoint).handle)
        if config.websocket_path is not None:
            app.router.add_get(config.websocket_path, self._websockets.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               keepalive_timeout=KEEPALIVE_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise CannotListenError(f"http-webhook cannot listen on {config.host}:"
                                    f"{config.port}: {exc.strerror}",
                                    retry_after_s=LISTEN_RETRY_S) from None
        self._runner = runner
        self.port = _bound_port(runner, config.port)
        self._log.info("webhook_listening", host=config.host, port=self.port, path=config.path,
                       websocket_path=config.websocket_path)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
