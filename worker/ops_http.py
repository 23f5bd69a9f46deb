"""The process's HTTP endpoint: ``/metrics`` (Prometheus) and ``/health``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


def build_app(registry: CollectorRegistry, health: HealthCheck) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthcheck(_: web.Request) -> web.Response:
        healthy, details = health()
        details["status"] = "ok" if healthy else "unhealthy"
        return web.json_response(details, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", healthcheck)
    app.router.add_get("/healthz", healthcheck)
    return app


class OpsServer:
    """Serves ``build_app`` on host:port; ``port`` is the bound one after start."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self.host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # aiohttp exposes the bound port (needed for port 0) only on the private server.
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
