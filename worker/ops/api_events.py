"""``GET /api/v1/events``: the fleet as server-sent events, for the console's live view.

Every ``STREAM_INTERVAL_S`` the stream carries ``event: fleet`` with ``{"connectors",
"groups"}`` (as ``GET /api/v1/connectors`` and ``/api/v1/groups`` answer them), or
``event: unavailable`` with the 503 body while Redis cannot answer: the stream stays
open and says so. Each read is bounded by the Redis deadline; the stream ends after
``MAX_STREAM_S`` (the client reconnects: proxies' idle limits, revoked tokens take
effect) and at once when the server shuts down. Values loaded from ``${VAR}``s are
redacted, as in every other answer."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from framework.core import redis_failures
from worker.ops.api_connectors import connector_views
from worker.ops.api_support import ApiDeps, requires, streaming
from worker.ops.consumer_groups import read_consumer_groups
from worker.ops.redis_outage import OPS_REDIS_DEADLINE_S, REDIS_DOWN, redis_unavailable
from worker.ops.tokens import Role

STREAM_INTERVAL_S = 2.0
MAX_STREAM_S = 300.0


def event_routes(deps: ApiDeps, stopping: asyncio.Event) -> web.RouteTableDef:
    """``stopping``: set when the server shuts down (every stream then ends)."""
    routes = web.RouteTableDef()

    @routes.get("/api/v1/events")
    @requires(Role.VIEWER)
    @streaming
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})  # nginx: pass each event on at once
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + MAX_STREAM_S
        while not stopping.is_set() and loop.time() < ends_at:
            kind, body = await _snapshot(deps)
            text = deps.secrets.current.redact_text(orjson.dumps(body, default=str).decode())
            try:
                await response.write(f"event: {kind}\ndata: {text}\n\n".encode())
            except (ConnectionError, RuntimeError):
                break  # the client went away
            try:
                await asyncio.wait_for(stopping.wait(), STREAM_INTERVAL_S)
            except TimeoutError:
                continue
        return response

    return routes


async def _snapshot(deps: ApiDeps) -> tuple[str, dict[str, Any]]:
    try:
        async with asyncio.timeout(OPS_REDIS_DEADLINE_S), redis_failures():
            connectors = await connector_views(deps)
            groups = await read_consumer_groups(deps.redis)
    except REDIS_DOWN as exc:
        return "unavailable", redis_unavailable(exc)
    return "fleet", {"connectors": connectors, "groups": [g.as_json() for g in groups]}
