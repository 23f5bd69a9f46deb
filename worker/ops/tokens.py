"""API tokens: who may use the control API, and with which role.

A token is ``cft_`` + 43 random URL-safe characters (256 bits), shown once when it
is created. Redis keeps only its SHA-256 (``fleet:api:tokens``: hash of the token ->
JSON id, name, role, createdAt, createdBy): a copy of Redis does not give anyone
API access. A plain hash is enough because the token is random, not a password
that could be guessed from a dictionary. Tokens are listed and revoked by ``id``.

Roles are ordered: ``viewer`` reads, ``operator`` also pauses, resumes, restarts,
polls, replays and injects, ``admin`` also manages the catalog, tokens and purges.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from framework.core import API_TOKENS_KEY, Clock, iso_utc

TOKEN_PREFIX = "cft_"


class Role(IntEnum):
    """A role includes every lower one."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: expected viewer, operator or admin"
                             ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without the token itself."""

    id: str
    name: str
    role: Role
    created_at: str
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role.label,
                "createdAt": self.created_at, "createdBy": self.created_by}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Creates, finds, lists and revokes API tokens in Redis."""

    def __init__(self, redis: Redis, *, clock: Clock, key: str = API_TOKENS_KEY) -> None:
        self._redis = redis
        self._clock = clock
        self._key = key

    async def create(self, *, name: str, role: Role, created_by: str) -> tuple[str, TokenInfo]:
        """A new token (returned once, never stored) and what is stored of it."""
        if not name.strip() or len(name) > 100:
            raise ValueError("a token's name must be 1 to 100 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(id="tok_" + secrets.token_hex(6), name=name.strip(), role=role,
                         created_at=iso_utc(self._clock.time()), created_by=created_by)
        await self._redis.hset(self._key, token_digest(token),
                               orjson.dumps(info.as_json()).decode())
        return token, info

    async def ensure(self, token: str, *, name: str, role: Role, created_by: str) -> TokenInfo:
        """Store ``token`` (one given by the deployment, e.g. FLEET_API_ADMIN_TOKEN) if it
        is not stored yet; its record. ValueError when it is not a well-formed token."""
        if not token.startswith(TOKEN_PREFIX) or not 40 <= len(token) <= 200:
            raise ValueError(f"a token must be {TOKEN_PREFIX} followed by at least 36 "
                             "random characters")
        digest = token_digest(token)
        info = TokenInfo(id="tok_" + digest[:12], name=name, role=role,
                         created_at=iso_utc(self._clock.time()), created_by=created_by)
        await self._redis.hsetnx(self._key, digest, orjson.dumps(info.as_json()).decode())
        found = await self.find(token)
        assert found is not None  # just stored, or stored before
        return found

    async def find(self, token: str) -> TokenInfo | None:
        """The token's record; None for an unknown, revoked or malformed token."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        raw = cast(str | None, await self._redis.hget(self._key, token_digest(token)))
        return None if raw is None else _info(raw)

    async def _records(self) -> dict[str, TokenInfo]:
        """Digest -> record of every readable token (an unreadable record, written by
        hand, is skipped: it grants nothing)."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._key))
        found = {}
        for digest, value in raw.items():
            info = _info(value)
            if info is not None:
                found[digest] = info
        return found

    async def list(self) -> list[TokenInfo]:
        return sorted((await self._records()).values(), key=lambda t: t.created_at)

    async def revoke(self, token_id: str) -> TokenInfo | None:
        """Delete the token with ``token_id``; None if there is none."""
        for digest, info in (await self._records()).items():
            if info.id == token_id:
                await self._redis.hdel(self._key, digest)
                return info
        return None


def _info(raw: str) -> TokenInfo | None:
    """The stored record; None when it is not one (written by hand, damaged)."""
    try:
        data = orjson.loads(raw)
        return TokenInfo(id=str(data["id"]), name=str(data["name"]),
                         role=Role.parse(str(data["role"])),
                         created_at=str(data["createdAt"]),
                         created_by=str(data.get("createdBy", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
