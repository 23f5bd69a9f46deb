"""Who may call what: bearer tokens and roles on the control API.

* A route marked with :func:`~worker.ops.api_support.requires` needs a token of
  that role or higher. A route with no mark (``/metrics``, ``/healthz``,
  ``/readyz``, ``/health``, the console's static files) is open.
* Every method other than GET, HEAD and OPTIONS needs a token, whatever the mark:
  nothing changes without one, ever.
* A GET of a viewer route needs a token only when ``read_auth`` is set
  (FLEET_API_READ_AUTH); a token sent anyway is checked (a bad one is a 401).
* Cross-site requests: the console sends its token in the ``Authorization``
  header, which a browser never adds to a request another site makes (no cookie
  is used), so a forged form or image cannot act. On top of that a mutating
  request whose ``Origin`` is not this server's is refused (403).
* Tokens: ours (``cft_...``, :mod:`worker.ops.tokens`), or, when a JWKS file is
  configured, the identity provider's JWTs (:mod:`worker.ops.jwt_tokens`).
* Failed logins: a client address with ``max_auth_failures`` failed tokens within
  ``auth_failure_window_s`` gets 429 (with ``Retry-After``) until the window ends,
  counted in Redis so that every replica of the API shares the count.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import MatchInfoError

from framework.core import API_AUTH_FAILURES_PREFIX
from worker.ops.api_support import ACTOR, ApiDeps, api_error, required_role
from worker.ops.jwt_tokens import InvalidJwtError
from worker.ops.operator_audit import Actor
from worker.ops.tokens import TOKEN_PREFIX, Role

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def authenticating(deps: ApiDeps) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        role = required_role(request.match_info.handler)
        safe = request.method in _SAFE_METHODS
        if (role is None and safe) or isinstance(request.match_info, MatchInfoError):
            return await handler(request)  # an open route, or no route (404, 405)
        needed = role or Role.OPERATOR
        if not safe:
            _check_origin(request)
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            if safe and needed == Role.VIEWER and not deps.options.read_auth:
                return await handler(request)
            raise api_error(401, "a bearer token is required (Authorization: Bearer TOKEN)",
                            required=needed.label)
        actor = await _actor(deps, request, header)
        if Role.parse(actor.role) < needed:
            raise api_error(403, f"role {actor.role} may not {request.method} {request.path}: "
                                 f"it needs {needed.label}", required=needed.label)
        request[ACTOR] = actor
        return await handler(request)

    return authenticate


async def _actor(deps: ApiDeps, request: web.Request, header: str) -> Actor:
    address = request.remote or "unknown"
    failures_key = f"{API_AUTH_FAILURES_PREFIX}{address}"
    failures = await deps.redis.get(failures_key)
    if failures is not None and int(failures) >= deps.options.max_auth_failures:
        retry_s = max(1, int(await deps.redis.ttl(failures_key)))
        error = api_error(429, f"too many failed logins from {address}; try again in "
                               f"{retry_s} s", retryAfterS=retry_s)
        error.headers["Retry-After"] = str(retry_s)
        raise error
    scheme, _, token = header.partition(" ")
    actor, refusal = await _verified(deps, token.strip()) if scheme.lower() == "bearer" else (
        None, "expected Authorization: Bearer TOKEN")
    if actor is None:
        async with deps.redis.pipeline(transaction=True) as pipe:
            pipe.incr(failures_key)
            pipe.expire(failures_key, deps.options.auth_failure_window_s, nx=True)
            await pipe.execute()
        error = api_error(401, refusal)
        error.headers["WWW-Authenticate"] = 'Bearer realm="connector-fleet"'
        raise error
    return actor


async def _verified(deps: ApiDeps, token: str) -> tuple[Actor | None, str]:
    """The token's actor, or None and why it is refused."""
    verifier = deps.options.jwt
    if token.startswith(TOKEN_PREFIX) or verifier is None:
        info = await deps.tokens.find(token)
        if info is None:
            return None, ("invalid, revoked or malformed token "
                          "(expected Authorization: Bearer cft_...)")
        return Actor(id=info.id, name=info.name, role=info.role.label), ""
    try:
        return verifier.actor(token, now_s=deps.clock.time()), ""
    except InvalidJwtError as exc:
        return None, str(exc)


def _check_origin(request: web.Request) -> None:
    """A mutating request from a page of another origin is refused."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return  # not a browser's cross-origin request (curl, the CLI, same-origin GETs)
    forwarded = request.headers.get("X-Forwarded-Host")
    hosts = {request.host, *([forwarded] if forwarded else [])}
    if urlsplit(origin).netloc not in hosts:
        raise api_error(403, f"cross-origin request from {origin[:100]} refused")
