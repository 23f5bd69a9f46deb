"""The ops HTTP API, served by every long-running process when METRICS_PORT is set.

=============================  ===============================================
``GET /metrics``               Prometheus exposition
``GET /metrics/connectors``    every connector: its metrics hash + lease holder/TTL
``GET /metrics/connectors/N``  one connector (404 if unknown)
``GET /health/connectors``     per-connector health; 200 if all enabled are healthy, else 503
``GET /health``                this process (connector-run: active/standby and freshness)
                               and Redis; 503 when either is not well
``GET /healthz``               liveness: the process answers (never reads Redis: a
                               restart would not bring Redis back)
``GET /readyz``                readiness: Redis answers
``/api/v1/...``                the control API (worker.ops.api_*; its OpenAPI
                               document at ``GET /api/v1/openapi.json``)
``GET /``                      the operator console (static HTML + JS)
=============================  ===============================================

The control API needs bearer tokens (worker.ops.auth); the routes above it stay open.

Every request that reads Redis has a total deadline (``OPS_REDIS_DEADLINE_S``); Redis
down, frozen or failing answers 503 JSON ``{"error": "Redis unavailable", ...}``,
never a 500 with a traceback. Any other failure is a 500 JSON naming its type, and
its traceback goes to the log only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from framework.core import (
    KnownSecrets,
    redis_failures,
)
from worker.ops.api_support import is_streaming
from worker.ops.context import OpsContext
from worker.ops.control_api import control_api
from worker.ops.fleet_status import connector_status, fleet_status
from worker.ops.redis_outage import OPS_REDIS_DEADLINE_S, REDIS_DOWN, redis_unavailable


def _guard_failures(ops: OpsContext) -> Middleware:
    """Bound each request by the Redis deadline; turn Redis outages into 503 JSON and
    anything else into a 500 JSON without its traceback."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A stream (server-sent events) bounds each of its reads itself.
        deadline_s = None if is_streaming(request.match_info.handler) else OPS_REDIS_DEADLINE_S
        try:
            async with asyncio.timeout(deadline_s), redis_failures():
                return await handler(request)
        except REDIS_DOWN as exc:
            return web.json_response(redis_unavailable(exc), status=503)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            # aiohttp's own 404 / 405 / 413: JSON too, as every answer of the API.
            return web.json_response({"error": exc.reason}, status=exc.status,
                                     headers={k: v for k, v in exc.headers.items()
                                              if k.lower() == "allow"})
        except Exception as exc:
            if ops.logger is not None:
                ops.logger.error("ops_request_failed", path=request.path, exc_info=exc,
                                 error=f"{type(exc).__name__}: {exc}")
            return web.json_response({"error": "internal error", "type": type(exc).__name__},
                                     status=500)

    return guard


def build_app(ops: OpsContext) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/metrics")
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(ops.prometheus)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @routes.get("/metrics/connectors")
    async def all_connectors(_: web.Request) -> web.Response:
        statuses = await fleet_status(ops.redis, ops.fleet(), now_s=ops.clock.time(),
                                      children=_children(ops), scheme=ops.keys)
        return web.json_response([s.as_json() for s in statuses])

    @routes.get("/metrics/connectors/{name}")
    async def one_connector(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        config = ops.fleet().get(name)
        if config is None:
            return web.json_response({"error": f"unknown connector {name}"}, status=404)
        status = await connector_status(ops.redis, config, now_s=ops.clock.time(),
                                        children=_children(ops), scheme=ops.keys)
        return web.json_response(status.as_json())

    @routes.get("/health/connectors")
    async def connectors_health(_: web.Request) -> web.Response:
        statuses = await fleet_status(ops.redis, ops.fleet(), now_s=ops.clock.time(),
                                      children=_children(ops), scheme=ops.keys)
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
        try:
            await ops.redis.ping()
        except REDIS_DOWN as exc:
            # The process is fine, but it cannot do its work: say so, naming Redis.
            return web.json_response({**details, **redis_unavailable(exc)}, status=503)
        details["status"] = "ok" if healthy else "unhealthy"
        return web.json_response(details, status=200 if healthy else 503)

    @routes.get("/healthz")
    async def liveness(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    @routes.get("/readyz")
    async def readiness(_: web.Request) -> web.Response:
        await ops.redis.ping()  # a failure: 503 naming Redis (the guard)
        return web.json_response({"status": "ready"})

    api = control_api(ops)
    middlewares = [_redacting(ops.secrets)] if ops.secrets else []
    app = web.Application(middlewares=[*middlewares, _guard_failures(ops), api.middleware],
                          client_max_size=2 * 1024 * 1024)
    app.add_routes(routes)
    app.add_routes(api.routes)
    app.on_startup.append(api.on_startup)
    app.on_shutdown.append(api.on_shutdown)
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
