"""What every control API route shares: its dependencies (:class:`ApiDeps`), the
role it requires (:func:`requires`), JSON errors that name what is wrong and where,
bounded JSON bodies, and the audit record of a mutating call."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import SecretStr
from redis.asyncio import Redis

from framework.core import Clock, KeyScheme, KnownSecrets
from framework.polling import FleetConfig
from framework.trust import TrustStore, trust_store_from_env
from worker.ops.jwt_tokens import JwtVerifier
from worker.ops.operator_audit import Actor, OperatorAudit
from worker.ops.tokens import Role, TokenStore

# A request body larger than this is refused (413) before it is parsed.
MAX_BODY_BYTES = 1_048_576
# A stream or connector name taken from a URL or a body: what keys may be named.
_NAME = re.compile(r"^[A-Za-z0-9_.:{}-]{1,200}$")

# Who made the request (set by the auth middleware when a token was given).
ACTOR: web.RequestKey[Actor] = web.RequestKey("actor", Actor)

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=Route)


@dataclass(frozen=True)
class ApiOptions:
    """Process settings the control API reads (FLEET_API_READ_AUTH, RULES_PATH,
    AUDIT_SIGNING_KEY, CATALOG_TRUSTED_KEYS[_JSON])."""

    read_auth: bool = False
    # FLEET_API_ADMIN_TOKEN: an admin token the deployment provides (a Kubernetes
    # Secret), stored at start so the API is usable without a shell on a pod.
    admin_token: SecretStr | None = None
    # FLEET_API_JWKS_PATH...: JWTs of the site's identity provider, besides our tokens.
    jwt: JwtVerifier | None = None
    rules_path: Path | None = None
    audit_signing_key: Path | None = None
    trust: Callable[[], TrustStore] = field(default=lambda: trust_store_from_env(os.environ))
    # Failed logins one client address may make per window before it gets 429s.
    max_auth_failures: int = 10
    auth_failure_window_s: int = 60


@dataclass(frozen=True)
class ApiDeps:
    """The one dependencies object of the control API's routes."""

    redis: Redis
    clock: Clock
    fleet: Callable[[], FleetConfig]
    keys: KeyScheme
    secrets: KnownSecrets
    tokens: TokenStore
    audit: OperatorAudit
    options: ApiOptions


def requires(role: Role) -> Callable[[R], R]:
    """Mark a route with the least role that may call it (the auth middleware checks)."""

    def mark(route: R) -> R:
        route.required_role = role  # type: ignore[attr-defined]  # read by the middleware
        return route

    return mark


def streaming(route: R) -> R:
    """Mark a route that answers a long-lived stream: it bounds each read itself,
    instead of the whole request being bounded by the Redis deadline."""
    route.streaming = True  # type: ignore[attr-defined]  # read by the guard middleware
    return route


def is_streaming(route: object) -> bool:
    return getattr(route, "streaming", False) is True


def required_role(route: object) -> Role | None:
    role = getattr(route, "required_role", None)
    return role if isinstance(role, Role) else None


def api_error(status: int, message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error whose body is ``{"error": message, ...}``."""
    body = orjson.dumps({"error": message, **extra}).decode()
    error = web.HTTPException(text=body, content_type="application/json")
    error.set_status(status)
    return error


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=str), status=status,
                        content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); 413 when it is larger than
    MAX_BODY_BYTES, 400 naming the problem when it is not a JSON object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise api_error(413, f"request body over {MAX_BODY_BYTES} bytes")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise api_error(413, f"request body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise api_error(400, f"request body: invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise api_error(400, f"request body: expected a JSON object, got {type(body).__name__}")
    return body


def checked_name(value: object, what: str) -> str:
    """``value`` if it can name a stream or connector key; else 400 naming ``what``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise api_error(400, f"{what}: expected 1 to 200 of A-Z a-z 0-9 _ . : {{ }} -, "
                             f"got {str(value)[:80]!r}")
    return value


def text_field(body: Mapping[str, Any], name: str, *, default: str | None = None,
               max_len: int = 500) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise api_error(400, f"request body: {name}: expected a text of 1 to {max_len} "
                             "characters")
    return value


def actor_of(request: web.Request) -> Actor:
    """Who made this request (the auth middleware set it: mutating calls need a token)."""
    actor = request.get(ACTOR)
    if not isinstance(actor, Actor):
        raise api_error(401, "a token is required")
    return actor


async def audited(deps: ApiDeps, request: web.Request, action: str, target: str,
                  details: Mapping[str, Any] | None = None) -> str:
    """Record a mutating call in the audit chain; the record's entry id."""
    record = await deps.audit.record(actor_of(request), action, target, dict(details or {}))
    return record.entry_id
