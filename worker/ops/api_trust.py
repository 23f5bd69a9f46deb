"""``/api/v1/catalog`` and ``/api/v1/audit``: the signed catalog (list, show,
revoke) and the audit chain (verify, recent records, one record)."""

from __future__ import annotations

from typing import Any, cast

import orjson
from aiohttp import web

from framework.core import CatalogError, get_logger
from framework.trust import AuditChain, Catalog, CatalogEntry
from worker.ops.api_support import (
    ApiDeps,
    api_error,
    audited,
    checked_name,
    json_body,
    json_response,
    requires,
    text_field,
)
from worker.ops.tokens import Role


def trust_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def catalog() -> Catalog:
        return Catalog(deps.redis, deps.options.trust(), clock=deps.clock,
                       logger=get_logger(component="ops_api"))

    @routes.get("/api/v1/catalog")
    @requires(Role.VIEWER)
    async def list_catalog(_: web.Request) -> web.Response:
        return json_response({"capabilities": [_entry(e) for e in await catalog().entries()]})

    @routes.get("/api/v1/catalog/{id}")
    @requires(Role.VIEWER)
    async def show_capability(request: web.Request) -> web.Response:
        try:
            definition = await catalog().show(
                checked_name(request.match_info["id"], "capability id"),
                request.query.get("version"))
        except CatalogError as exc:
            raise api_error(404, str(exc)) from None
        return json_response(definition.fields())

    @routes.post("/api/v1/catalog/{id}/revoke")
    @requires(Role.ADMIN)
    async def revoke(request: web.Request) -> web.Response:
        body = await json_body(request)
        version_range = text_field(body, "versionRange", max_len=100)
        reason = text_field(body, "reason")
        capability_id = checked_name(request.match_info["id"], "capability id")
        try:
            revocation = await catalog().revoke(capability_id, version_range, reason)
        except CatalogError as exc:
            raise api_error(400, str(exc)) from None
        await audited(deps, request, "catalog_revoke", capability_id,
                      {"versionRange": version_range, "reason": reason})
        return json_response({"id": capability_id, "versionRange": revocation.version_range,
                              "versions": list(revocation.versions), "reason": reason})

    @routes.get("/api/v1/audit/verify")
    @requires(Role.VIEWER)
    async def verify(_: web.Request) -> web.Response:
        report = await AuditChain(deps.redis).verify(deps.options.trust())
        return json_response({"ok": report.ok, "records": report.records,
                              "signed": report.signed, "headHash": report.head_hash,
                              "broken": None if report.broken is None else str(report.broken)})

    @routes.get("/api/v1/audit/records")
    @requires(Role.VIEWER)
    async def recent_records(request: web.Request) -> web.Response:
        count = request.query.get("count", "50")
        if not count.isdigit() or not 1 <= int(count) <= 1000:
            raise api_error(400, "query count: expected an integer from 1 to 1000")
        chain = AuditChain(deps.redis)
        entries = cast(list[tuple[str, dict[str, str]]],
                       await deps.redis.xrevrange(chain.stream, count=int(count)))
        return json_response({"records": [_record(i, f) for i, f in entries]})

    @routes.get("/api/v1/audit/records/{id}")
    @requires(Role.VIEWER)
    async def show_record(request: web.Request) -> web.Response:
        entry_id = request.match_info["id"]
        head, _, tail = entry_id.partition("-")
        if not (head.isdigit() and tail.isdigit()):
            raise api_error(400, f"record id: expected a stream entry id, got {entry_id[:60]!r}")
        entries = cast(list[tuple[str, dict[str, str]]],
                       await deps.redis.xrange(AuditChain(deps.redis).stream, entry_id,
                                               entry_id))
        if not entries:
            raise api_error(404, f"no audit record {entry_id}")
        return json_response(_record(*entries[0]))

    return routes


def _entry(entry: CatalogEntry) -> dict[str, Any]:
    revocation = entry.revocation
    return {"id": entry.capability_id, "version": entry.version, "keyId": entry.key_id,
            "problem": entry.problem,
            "revoked": None if revocation is None else {
                "range": revocation.version_range, "reason": revocation.reason,
                "revokedAt": revocation.revoked_at}}


def _record(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    try:
        body = orjson.loads(fields.get("body", "null"))
    except orjson.JSONDecodeError:
        body = None
    return {"entryId": entry_id, "body": body, "hash": fields.get("hash"),
            "signed": bool(fields.get("sig"))}
