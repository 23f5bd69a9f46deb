"""OIDC / JWT bearer tokens, verified against a JWKS file: for sites whose identity
provider (Keycloak, Dex, Azure AD, ...) issues the operators' tokens.

A token is accepted when its signature verifies with a key of the JWKS file (by
``kid``; asymmetric algorithms only: with a public key set, HS256 would let anyone
holding the public key sign), it has not expired (``exp`` required, ``nbf`` honoured,
``LEEWAY_S`` of clock skew), its ``iss`` and ``aud`` are the configured ones, and its
role claim (a string or a list; ``role`` by default) names a role: the highest one
it names counts. The actor is ``jwt:<sub>``, named by ``preferred_username``,
``email`` or ``sub``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from framework.core import ConfigError
from worker.ops.operator_audit import Actor
from worker.ops.tokens import Role

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA"]
LEEWAY_S = 30
MAX_TOKEN_CHARS = 16_384


class InvalidJwtError(ValueError):
    """Why a JWT is refused (said to the caller: it names no secret)."""


@dataclass(frozen=True)
class JwtVerifier:
    keys: KeySet
    issuer: str
    audience: str
    role_claim: str = "role"

    @classmethod
    def from_file(cls, jwks_path: Path, *, issuer: str | None, audience: str | None,
                  role_claim: str = "role") -> JwtVerifier:
        """ConfigError naming the file or the missing setting."""
        if not issuer or not audience:
            raise ConfigError("FLEET_API_JWKS_PATH needs FLEET_API_JWT_ISSUER and "
                              "FLEET_API_JWT_AUDIENCE")
        try:
            keys = KeySet.import_key_set(_read_json(jwks_path))
        except (OSError, ValueError, JoseError) as exc:
            raise ConfigError(f"FLEET_API_JWKS_PATH {jwks_path}: not a readable JWKS "
                              f"(expected {{\"keys\": [...]}}): {exc}") from None
        return cls(keys, issuer, audience, role_claim)

    def actor(self, token: str, *, now_s: float) -> Actor:
        """The verified token's actor; InvalidJwtError says why it is refused."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidJwtError("the token is too long")
        try:
            decoded = jwt.decode(token, self.keys, algorithms=ALGORITHMS)
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


def _read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())
