"""``/api/v1/devices`` (viewer) and ``/api/v1/device-groups`` (maintenance windows:
operator): the device registry and absence watchdog of providers.devices."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from framework.consuming import parse_duration_s
from providers.devices import DeviceGroups, DeviceRegistry, check_device_id, check_group
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
from worker.ops.tokens import Role

MAX_COUNT = 1000


def device_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    registry = DeviceRegistry(deps.redis, clock=deps.clock)
    groups = DeviceGroups(deps.redis, clock=deps.clock)

    @routes.get("/api/v1/devices")
    @requires(Role.VIEWER)
    async def list_devices(request: web.Request) -> web.Response:
        query = request.query
        status = query.get("status")
        if status not in (None, "online", "absent", "unknown"):
            raise api_error(400, "query: status: expected online, absent or unknown")
        try:
            group = check_group(query["group"], "query: group") if "group" in query else None
            page = await registry.page(after=query.get("after", "")[:128],
                                       count=_count(query.get("count", "100")),
                                       group=group, status=status)
        except ValueError as exc:
            raise api_error(400, str(exc)) from None
        return json_response({"devices": [d.as_json() for d in page.devices],
                              "next": page.next_after, "total": await registry.count()})

    @routes.get("/api/v1/devices/{id}")
    @requires(Role.VIEWER)
    async def show_device(request: web.Request) -> web.Response:
        try:
            device_id = check_device_id(request.match_info["id"], "path: id")
        except ValueError as exc:
            raise api_error(400, str(exc)) from None
        device = await registry.show(device_id)
        if device is None:
            raise api_error(404, f"no device {device_id!r}")
        return json_response(device.as_json())

    @routes.get("/api/v1/device-groups")
    @requires(Role.VIEWER)
    async def list_groups(_: web.Request) -> web.Response:
        return json_response({"timeoutsMs": await groups.timeouts(),
                              "windows": [w.as_json() for w in await groups.windows()]})

    @routes.post("/api/v1/device-groups/{name}/maintenance")
    @requires(Role.OPERATOR)
    async def add_window(request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            group = check_group(request.match_info["name"], "path: group")
            start_s = _time(body.get("start"), "start", default=deps.clock.time())
            window = await groups.add_window(
                group, start_s=start_s, end_s=_end(body, start_s),
                reason=text_field(body, "reason", max_len=500), created_by=actor_of(request).id)
        except ValueError as exc:
            raise api_error(400, f"request body: {exc}") from None
        await audited(deps, request, "maintenance_window_add", f"device-group:{group}",
                      window.as_json())
        return json_response(window.as_json(), status=201)

    @routes.delete("/api/v1/device-groups/{name}/maintenance/{id}")
    @requires(Role.OPERATOR)
    async def remove_window(request: web.Request) -> web.Response:
        try:
            group = check_group(request.match_info["name"], "path: group")
        except ValueError as exc:
            raise api_error(400, str(exc)) from None
        window = await groups.remove_window(group, request.match_info["id"][:40])
        if window is None:
            raise api_error(404, f"no maintenance window {request.match_info['id'][:40]!r} "
                                 f"in group {group!r}")
        await audited(deps, request, "maintenance_window_remove", f"device-group:{group}",
                      window.as_json())
        return json_response({**window.as_json(), "removed": True})

    return routes


def _count(raw: str) -> int:
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"query: count: expected 1 to {MAX_COUNT}, got {raw[:20]!r}")
    return count


def _time(raw: object, name: str, *, default: float) -> float:
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise ValueError(f"{name}: expected an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: expected an ISO 8601 time, got {raw[:40]!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _end(body: dict[str, object], start_s: float) -> float:
    """``end`` (ISO 8601) or ``for`` (a duration: 2h, 30m, seconds), exactly one."""
    if ("end" in body) == ("for" in body):
        raise ValueError("give exactly one of end (ISO 8601) and for (a duration: 2h, 30m)")
    if "end" in body:
        return _time(body["end"], "end", default=start_s)
    length_s = parse_duration_s(body["for"])
    if length_s is None:
        raise ValueError(f"for: expected a duration (2h, 30m, seconds), got {body['for']!r}")
    return start_s + length_s
