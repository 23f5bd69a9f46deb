"""``/api/v1/connectors``: the fleet's connectors, and what operators do to them.

Reading: the list, and one connector's configuration (secrets redacted), lease,
metrics, health, lag (how long since its last successful poll), pause flag and
last error. Acting (operator): pause and resume (the durable flag of
:mod:`worker.ops.controls`), restart (the worker rebuilds the connector from its
configuration, as on SIGHUP), poll now, and release the lease (the holder loses it
at its next renewal, within a third of the TTL, and a standby may take over)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from framework.polling import ConnectorConfig, read_lease
from worker.ops.api_support import (
    ApiDeps,
    actor_of,
    api_error,
    audited,
    json_body,
    json_response,
    requires,
    text_field,
)
from worker.ops.controls import Action, announce, clear_paused, set_paused
from worker.ops.fleet_status import ConnectorStatus, connector_status, read_children
from worker.ops.tokens import Role

# Deletes the lease only if the holder is still the one the operator saw.
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def connector_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    release = deps.redis.register_script(_RELEASE_LEASE)

    @routes.get("/api/v1/connectors")
    @requires(Role.VIEWER)
    async def list_connectors(_: web.Request) -> web.Response:
        return json_response({"connectors": await connector_views(deps)})

    @routes.get("/api/v1/connectors/{name}")
    @requires(Role.VIEWER)
    async def show_connector(request: web.Request) -> web.Response:
        config = _config(deps, request)
        view = await _view(deps, config, await read_children(deps.redis))
        view["config"] = config.redacted(deps.fleet().secrets)
        return json_response(view)

    @routes.post("/api/v1/connectors/{name}/pause")
    @requires(Role.OPERATOR)
    async def pause(request: web.Request) -> web.Response:
        config = _config(deps, request)
        reason = text_field(await json_body(request), "reason", default="paused by an operator")
        actor = actor_of(request)
        await set_paused(deps.redis, config.name, by=actor.name, reason=reason,
                         at_s=deps.clock.time())
        audit_id = await audited(deps, request, "pause", config.name, {"reason": reason})
        return json_response({"connector": config.name, "paused": True, "auditId": audit_id})

    @routes.post("/api/v1/connectors/{name}/resume")
    @requires(Role.OPERATOR)
    async def resume(request: web.Request) -> web.Response:
        config = _config(deps, request)
        was_paused = await clear_paused(deps.redis, config.name)
        audit_id = await audited(deps, request, "resume", config.name, {"wasPaused": was_paused})
        return json_response({"connector": config.name, "paused": False,
                              "wasPaused": was_paused, "auditId": audit_id})

    @routes.post("/api/v1/connectors/{name}/restart")
    @requires(Role.OPERATOR)
    async def restart(request: web.Request) -> web.Response:
        return await _announced(deps, request, "restart")

    @routes.post("/api/v1/connectors/{name}/poll")
    @requires(Role.OPERATOR)
    async def poll_now(request: web.Request) -> web.Response:
        return await _announced(deps, request, "poll_now")

    @routes.post("/api/v1/connectors/{name}/release-lease")
    @requires(Role.OPERATOR)
    async def release_lease(request: web.Request) -> web.Response:
        config = _config(deps, request)
        key = config.keys(deps.keys).lease
        lease = await read_lease(deps.redis, config.name, key=key)
        if lease.holder is None:
            raise api_error(409, f"connector {config.name}: no instance holds its lease")
        released = bool(await release(keys=[key], args=[lease.holder]))
        audit_id = await audited(deps, request, "release_lease", config.name,
                                 {"holder": lease.holder, "released": released})
        return json_response({"connector": config.name, "released": released,
                              "previousHolder": lease.holder, "auditId": audit_id})

    return routes


async def _announced(deps: ApiDeps, request: web.Request, action: Action) -> web.Response:
    config = _config(deps, request)
    listeners = await announce(deps.redis, config.name, action)
    audit_id = await audited(deps, request, action, config.name, {"listeners": listeners})
    return json_response({"connector": config.name, "action": action,
                          "listeners": listeners, "auditId": audit_id}, status=202)


async def connector_views(deps: ApiDeps) -> list[dict[str, Any]]:
    """Every connector as the API shows it (without its configuration)."""
    children = await read_children(deps.redis)
    return [await _view(deps, config, children) for config in deps.fleet().connectors.values()]


def _config(deps: ApiDeps, request: web.Request) -> ConnectorConfig:
    name = request.match_info["name"]
    config = deps.fleet().get(name)
    if config is None:
        raise api_error(404, f"unknown connector {name[:200]!r}")
    return config


async def _view(deps: ApiDeps, config: ConnectorConfig,
                children: dict[str, dict[str, Any]]) -> dict[str, Any]:
    now_s = deps.clock.time()
    status = await connector_status(deps.redis, config, now_s=now_s, children=children,
                                    scheme=deps.keys)
    view = status.as_json()
    view["lagMs"] = _lag_ms(status, now_s)
    return view


def _lag_ms(status: ConnectorStatus, now_s: float) -> int | None:
    last = (status.metrics or {}).get("lastSuccessTime")
    if not last:
        return None
    at = datetime.fromisoformat(str(last).replace("Z", "+00:00")).timestamp()
    return max(0, round((now_s - at) * 1000))
