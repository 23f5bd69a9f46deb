"""The ops HTTP API, served by every long-running process when METRICS_PORT is set.

=============================  ===============================================
``GET /metrics``               Prometheus exposition
``GET /metrics/connectors``    every connector: its metrics hash + lease holder/TTL
``GET /metrics/connectors/N``  one connector (404 if unknown)
``GET /health/connectors``     per-connector health; 200 if all enabled are healthy, else 503
``GET /health``                this process (connector-run: active/standby and freshness)
``GET /healthz``               liveness: the process answers
``GET /readyz``                readiness: Redis answers
=============================  ===============================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis

from framework.core import UNAVAILABLE, Clock, KnownSecrets
from framework.polling import FleetConfig
from worker.ops.fleet_status import connector_status, fleet_status

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True)
class OpsContext:
    redis: Redis
    prometheus: CollectorRegistry
    fleet: Callable[[], FleetConfig]  # the configuration currently applied
    clock: Clock
    process_health: HealthCheck
    # The supervisor's live view of its children; None: read what it wrote to Redis.
    children: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    # The ${VAR} values the process loaded: redacted in every JSON answer.
    secrets: KnownSecrets | None = None


def build_app(ops: OpsContext) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/metrics")
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(ops.prometheus)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @routes.get("/metrics/connectors")
    async def all_connectors(_: web.Request) -> web.Response:
        statuses = await fleet_status(ops.redis, ops.fleet(), now_s=ops.clock.time(),
                                      children=_children(ops))
        return web.json_response([s.as_json() for s in statuses])

    @routes.get("/metrics/connectors/{name}")
    async def one_connector(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        config = ops.fleet().get(name)
        if config is None:
            return web.json_response({"error": f"unknown connector {name}"}, status=404)
        status = await connector_status(ops.redis, config, now_s=ops.clock.time(),
                                        children=_children(ops))
        return web.json_response(status.as_json())

    @routes.get("/health/connectors")
    async def connectors_health(_: web.Request) -> web.Response:
        statuses = await fleet_status(ops.redis, ops.fleet(), now_s=ops.clock.time(),
                                      children=_children(ops))
        enabled = [s for s in statuses if s.config.enabled]
        healthy = all(s.healthy for s in enabled)
        body = {
            "healthy": healthy,
            "connectors": {
                s.config.name: {"healthy": s.healthy, "reason": s.reason} for s in enabled
            },
        }
        return web.json_response(body, status=200 if healthy else 503)

    @routes.get("/health")
    async def process_health(_: web.Request) -> web.Response:
        healthy, details = ops.process_health()
        details["status"] = "ok" if healthy else "unhealthy"
        return web.json_response(details, status=200 if healthy else 503)

    @routes.get("/healthz")
    async def liveness(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    @routes.get("/readyz")
    async def readiness(_: web.Request) -> web.Response:
        try:
            await ops.redis.ping()
        except UNAVAILABLE as exc:
            return web.json_response({"status": "redis unavailable", "error": str(exc)},
                                     status=503)
        return web.json_response({"status": "ready"})

    app = web.Application(middlewares=[_redacting(ops.secrets)] if ops.secrets else [])
    app.add_routes(routes)
    return app


def _redacting(secrets: KnownSecrets) -> Any:
    """Whatever an answer carries (a health detail, an error text), no ${VAR} value."""

    @web.middleware
    async def redact(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response) and response.content_type == "application/json":
            response.text = secrets.redact_text(response.text or "")
        return response

    return redact


def _children(ops: OpsContext) -> Mapping[str, Mapping[str, Any]] | None:
    return ops.children() if ops.children is not None else None


class OpsServer:
    """Serves the app on host:port; ``port`` is the bound one after ``start``."""

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
