"""Who is calling: one check per auth mode, each giving the caller's client id (the
unit of rate limits and idempotency keys) or refusing with a reason that names the
header, never a key.

Signed modes (``githubHmac``, ``hmac``) also give a *dedupe key* bound to the body:
the signature. A replayed request is then a redelivery (a no-op answering 2xx, never a
second event), and a timestamped one outside the replay window is refused outright.
Comparisons are constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from providers.webhook.config import (
    ApiKeyAuth,
    BearerAuth,
    GithubHmacAuth,
    NoAuth,
    TimestampedHmacAuth,
)
from providers.webhook.keyring import ClientKey, KeyRing

AuthConfig = NoAuth | ApiKeyAuth | BearerAuth | GithubHmacAuth | TimestampedHmacAuth


@dataclass(frozen=True)
class Caller:
    client: str
    # Identifies a replay of this very request (signed modes); None otherwise.
    signature_key: str | None = None


class AuthError(Exception):
    """401: the request does not prove who sent it."""


def hex_hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class Authenticator:
    """Checks requests for one auth config (see the module docstring)."""

    def __init__(self, config: AuthConfig, keys: KeyRing | None,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._keys = keys
        self._clock = clock

    @property
    def needs_body(self) -> bool:
        """Signed modes check the body: the headers alone cannot authenticate."""
        return isinstance(self._config, GithubHmacAuth | TimestampedHmacAuth)

    def by_headers(self, headers: Mapping[str, str], peer: str) -> Caller:
        """The caller of a mode that authenticates by headers (none, apiKey, bearer)."""
        config = self._config
        if isinstance(config, NoAuth):
            return Caller(peer)
        if isinstance(config, ApiKeyAuth):
            return Caller(self._holder(headers.get(config.header), config.header))
        if isinstance(config, BearerAuth):
            scheme, _, token = (headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("Authorization: expected 'Bearer <token>'")
            return Caller(self._holder(token.strip(), "Authorization"))
        raise AssertionError("signed modes authenticate with the body")

    def by_signature(self, headers: Mapping[str, str], body: bytes) -> Caller:
        config = self._config
        if isinstance(config, GithubHmacAuth):
            return self._github(config, headers, body)
        if isinstance(config, TimestampedHmacAuth):
            return self._timestamped(config, headers, body)
        raise AssertionError("only signed modes authenticate with the body")

    def _current(self) -> list[ClientKey]:
        return self._keys.current() if self._keys is not None else []

    def _holder(self, presented: str | None, header: str) -> str:
        if not presented:
            raise AuthError(f"{header}: missing")
        given = presented.encode()
        for key in self._current():
            if hmac.compare_digest(key.key, given):
                return key.client
        raise AuthError(f"{header}: not a valid key")

    def _github(self, config: GithubHmacAuth, headers: Mapping[str, str],
                body: bytes) -> Caller:
        signature = headers.get(config.header) or ""
        if not signature.startswith("sha256="):
            raise AuthError(f"{config.header}: expected 'sha256=<hex>'")
        client = self._signer(signature.removeprefix("sha256="), body, config.header)
        return Caller(client, f"sig:{signature.removeprefix('sha256=')}")

    def _timestamped(self, config: TimestampedHmacAuth, headers: Mapping[str, str],
                     body: bytes) -> Caller:
        stamp = headers.get(config.timestamp_header) or ""
        try:
            sent_at = int(stamp)
        except ValueError:
            raise AuthError(f"{config.timestamp_header}: expected Unix seconds") from None
        if abs(self._clock() - sent_at) > config.replay_window_s:
            raise AuthError(f"{config.timestamp_header}: outside the replay window of "
                            f"{config.replay_window_s} s")
        signature = headers.get(config.header) or ""
        if not signature.startswith("v1="):
            raise AuthError(f"{config.header}: expected 'v1=<hex>'")
        digest = signature.removeprefix("v1=")
        client = self._signer(digest, f"{sent_at}.".encode() + body, config.header)
        return Caller(client, f"sig:{digest}")

    def _signer(self, digest: str, message: bytes, header: str) -> str:
        given = digest.strip().lower().encode()
        for key in self._current():
            if hmac.compare_digest(hex_hmac(key.key, message).encode(), given):
                return key.client
        raise AuthError(f"{header}: signature does not match")
