"""OIDC / JWT bearer tokens, verified against a JWKS file: for sites whose identity
provider (Keycloak, Dex, Azure AD, ...) issues the operators' tokens.

A token is accepted when its signature verifies with a key of the JWKS file (by
``kid``; asymmetric algorithms only: with a public key set, HS256 would let anyone
holding the public key sign), it has not expired (``exp`` required, ``nbf`` honoured,
``LEEWAY_S`` of clock skew), its ``iss`` and ``aud`` are the configured ones, and its
role claim (a string or a list; ``role`` by default) names a role: the highest one
it names counts. The actor is ``jwt:<sub>``, named by ``preferred_username``,
``email`` or ``sub``.

The JWKS file is read again when it changes (:class:`JwksFile`: its inode, mtime or
size, looked at on each verification, one ``stat``), so a key the identity provider
rotated in is used without a restart. A changed file that is not a JWKS (half
written, broken) leaves the keys read last in use, and is logged
(``jwks_reload_failed``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from framework.core import ConfigError, get_logger
from worker.ops.operator_audit import Actor
from worker.ops.tokens import Role

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA"]
LEEWAY_S = 30
MAX_TOKEN_CHARS = 16_384
# A key set of a few dozen keys is a few KiB; anything near this is not one.
MAX_JWKS_BYTES = 1024 * 1024


class InvalidJwtError(ValueError):
    """Why a JWT is refused (said to the caller: it names no secret)."""


class JwksFile:
    """A JWKS file's keys, read again when the file changes (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = _stamp(path)
        self._keys = _load(path)
        self._log = get_logger(component="ops_api")

    def keys(self) -> KeySet:
        try:
            stamp = _stamp(self.path)
        except OSError:
            return self._keys  # being replaced (or gone): the last keys until it is back
        if stamp == self._stamp:
            return self._keys
        self._stamp = stamp  # a broken file is tried again only once it changes again
        try:
            self._keys = _load(self.path)
        except (OSError, ValueError, JoseError) as exc:
            self._log.warning("jwks_reload_failed", path=str(self.path),
                              error=f"{type(exc).__name__}: {exc}"[:300])
            return self._keys
        self._log.info("jwks_reloaded", path=str(self.path),
                       kids=[key.kid for key in self._keys.keys])
        return self._keys


@dataclass(frozen=True)
class JwtVerifier:
    keys: KeySet
    issuer: str
    audience: str
    role_claim: str = "role"
    # When set, the keys come from this file, read again when it changes.
    source: JwksFile | None = None

    @classmethod
    def from_file(cls, jwks_path: Path, *, issuer: str | None, audience: str | None,
                  role_claim: str = "role") -> JwtVerifier:
        """ConfigError naming the file or the missing setting."""
        if not issuer or not audience:
            raise ConfigError("FLEET_API_JWKS_PATH needs FLEET_API_JWT_ISSUER and "
                              "FLEET_API_JWT_AUDIENCE")
        try:
            source = JwksFile(jwks_path)
        except (OSError, ValueError, JoseError) as exc:
            raise ConfigError(f"FLEET_API_JWKS_PATH {jwks_path}: not a readable JWKS "
                              f"(expected {{\"keys\": [...]}}): {exc}") from None
        return cls(source.keys(), issuer, audience, role_claim, source)

    def actor(self, token: str, *, now_s: float) -> Actor:
        """The verified token's actor; InvalidJwtError says why it is refused."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidJwtError("the token is too long")
        try:
            keys = self.keys if self.source is None else self.source.keys()
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            claims = decoded.claims
            jwt.JWTClaimsRegistry(
                now=int(now_s), leeway=LEEWAY_S, exp={"essential": True},
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
            ).validate(claims)
        except (JoseError, ValueError) as exc:
            raise InvalidJwtError(f"JWT refused: {type(exc).__name__}: {exc}") from None
        role = _highest_role(claims.get(self.role_claim))
        if role is None:
            raise InvalidJwtError(f"JWT refused: claim {self.role_claim!r} names no role "
                                  "(viewer, operator or admin)")
        subject = str(claims.get("sub") or "")
        if not subject:
            raise InvalidJwtError("JWT refused: no sub")
        name = claims.get("preferred_username") or claims.get("email") or subject
        return Actor(id=f"jwt:{subject}"[:200], name=str(name)[:200], role=role.label)


def _highest_role(value: Any) -> Role | None:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    roles = [Role[name.upper()] for name in names
             if isinstance(name, str) and name.upper() in Role.__members__]
    return max(roles) if roles else None


def _load(path: Path) -> KeySet:
    with path.open("rb") as file:
        data = file.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    return KeySet.import_key_set(orjson.loads(data))


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when the file is rewritten or replaced (a rename: a new inode)."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size
