"""The control API (``/api/v1``) and the operator console (``/``), assembled on the
ops HTTP server: every route module's routes, the auth middleware, the OpenAPI
document and the console's static files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Middleware

from framework.core import KeyScheme, KnownSecrets, Logger, get_logger
from worker.ops.api_connectors import connector_routes
from worker.ops.api_devices import device_routes
from worker.ops.api_events import event_routes
from worker.ops.api_ota import ota_routes
from worker.ops.api_rules import rules_routes
from worker.ops.api_streams import stream_routes
from worker.ops.api_support import ACTOR, ApiDeps, api_error, json_response, requires
from worker.ops.api_tokens import token_routes
from worker.ops.api_trust import trust_routes
from worker.ops.auth import authenticating
from worker.ops.context import OpsContext
from worker.ops.operator_audit import OperatorAudit
from worker.ops.tokens import Role, TokenStore

# Storing FLEET_API_ADMIN_TOKEN at start gives up after this long (Redis down).
OPS_STARTUP_DEADLINE_S = 5.0
# The console's files: name -> content type (nothing else is served from there).
_CONSOLE_FILES = {"index.html": "text/html", "console.js": "text/javascript",
                  "console.css": "text/css", "lag-charts.js": "text/javascript",
                  "devices.js": "text/javascript"}


class ControlApi(NamedTuple):
    routes: list[web.RouteDef]
    middleware: Middleware
    on_startup: Callable[[web.Application], Awaitable[None]]
    on_shutdown: Callable[[web.Application], Awaitable[None]]


def control_api(ops: OpsContext) -> ControlApi:
    deps = ApiDeps(
        redis=ops.redis, clock=ops.clock, fleet=ops.fleet, keys=ops.keys or KeyScheme(),
        secrets=ops.secrets or KnownSecrets(),
        tokens=TokenStore(ops.redis, clock=ops.clock),
        audit=OperatorAudit.from_key_file(ops.redis, clock=ops.clock,
                                          key_path=ops.api.audit_signing_key),
        options=ops.api,
    )
    stopping = asyncio.Event()

    async def stop_streams(_: web.Application) -> None:
        stopping.set()

    routes: list[web.RouteDef] = []
    for table in (connector_routes(deps), stream_routes(deps), rules_routes(deps),
                  trust_routes(deps), token_routes(deps), event_routes(deps, stopping),
                  device_routes(deps),
                  ota_routes(deps, stopping),
                  _own_routes()):
        routes.extend(r for r in table if isinstance(r, web.RouteDef))
    return ControlApi(routes, authenticating(deps), _storing_admin_token(deps, ops.logger),
                      stop_streams)


def _storing_admin_token(deps: ApiDeps, logger: Logger | None
                         ) -> Callable[[web.Application], Awaitable[None]]:
    async def store(_: web.Application) -> None:
        token = deps.options.admin_token
        if token is None:
            return
        log = logger or get_logger(component="ops_api")
        try:
            async with asyncio.timeout(OPS_STARTUP_DEADLINE_S):
                info = await deps.tokens.ensure(token.get_secret_value(), name="deployment",
                                                role=Role.ADMIN, created_by="FLEET_API_ADMIN_TOKEN")
        except ValueError as exc:
            log.error("admin_token_invalid", variable="FLEET_API_ADMIN_TOKEN", error=str(exc))
        except Exception as exc:  # Redis down at start: the API works once it is back
            log.warning("admin_token_not_stored", error=f"{type(exc).__name__}: {exc}")
        else:
            log.info("admin_token_stored", token_id=info.id)

    return store


def _own_routes() -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/api/v1/whoami")
    @requires(Role.VIEWER)
    async def whoami(request: web.Request) -> web.Response:
        actor = request.get(ACTOR)
        body = actor.as_json() if actor is not None else None
        return json_response({"actor": body})

    @routes.get("/api/v1/openapi.json")
    async def openapi(_: web.Request) -> web.Response:
        text = resources.files("worker.ops").joinpath("openapi.json").read_text("utf-8")
        return web.Response(text=text, content_type="application/json")

    @routes.get("/")
    async def console(_: web.Request) -> web.Response:
        return _console_file("index.html")

    @routes.get("/console/{file}")
    async def console_asset(request: web.Request) -> web.Response:
        return _console_file(request.match_info["file"])

    return routes


def _console_file(name: str) -> web.Response:
    content_type = _CONSOLE_FILES.get(name)
    if content_type is None:
        raise api_error(404, f"no console file {name[:60]!r}")
    text = resources.files("worker.ops").joinpath("console", name).read_text("utf-8")
    return web.Response(text=text, content_type=content_type,
                        headers={"Cache-Control": "no-cache",
                                 "Content-Security-Policy": "default-src 'self'",
                                 "X-Frame-Options": "DENY"})
