"""``/api/v1/tokens`` (admin): the control API's own tokens: list, create (the
token is in the answer, once), revoke."""

from __future__ import annotations

from aiohttp import web

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


def token_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/api/v1/tokens")
    @requires(Role.ADMIN)
    async def list_tokens(_: web.Request) -> web.Response:
        return json_response({"tokens": [t.as_json() for t in await deps.tokens.list()]})

    @routes.post("/api/v1/tokens")
    @requires(Role.ADMIN)
    async def create_token(request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            role = Role.parse(text_field(body, "role", max_len=20))
            token, info = await deps.tokens.create(name=text_field(body, "name", max_len=100),
                                                   role=role, created_by=actor_of(request).id)
        except ValueError as exc:
            raise api_error(400, f"request body: {exc}") from None
        await audited(deps, request, "token_create", info.id, info.as_json())
        return json_response({**info.as_json(), "token": token}, status=201)

    @routes.delete("/api/v1/tokens/{id}")
    @requires(Role.ADMIN)
    async def revoke_token(request: web.Request) -> web.Response:
        info = await deps.tokens.revoke(request.match_info["id"])
        if info is None:
            raise api_error(404, f"no token {request.match_info['id'][:40]!r}")
        await audited(deps, request, "token_revoke", info.id, info.as_json())
        return json_response({**info.as_json(), "revoked": True})

    return routes
