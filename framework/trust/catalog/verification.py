"""Signature verification of stored definitions, cached, under swappable trusted keys.

Checks are cached per (id, version, SHA-256 of the stored JSON): a changed stored
definition is checked again. A key removed by :meth:`Verifier.replace_trust` drops
what it verified: each definition signed by it is refused from then on until the
key is trusted again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from framework.core.clock import Clock, iso_utc
from framework.core.errors import SignatureMismatchError, UntrustedKeyError
from framework.core.keys import catalog_definitions_key
from framework.trust.catalog.definition import CapabilityDefinition, parse_definition
from framework.trust.catalog.signing import SignatureCheck, TrustStore, signature_key_id


@dataclass(frozen=True)
class VerifiedCapability:
    """A definition whose signature was checked against a trusted key."""

    definition: CapabilityDefinition
    key_id: str
    # SHA-256 (hex) of the stored JSON the check was made on.
    definition_hash: str


@dataclass(frozen=True)
class TrustChange:
    """What :meth:`Verifier.replace_trust` changed, as key ids (never key material)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    # Still trusted, with another expiry or name.
    changed: tuple[str, ...]
    trusted: tuple[str, ...]


def definition_hash(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()


class Verifier:
    def __init__(self, trust: TrustStore, clock: Clock) -> None:
        self._trust = trust
        self._clock = clock
        self._verified: dict[tuple[str, str, str], VerifiedCapability] = {}
        # Key id -> when replace_trust stopped trusting it: their refusals say so.
        self._retired: dict[str, str] = {}

    def check_signature(self, definition: CapabilityDefinition) -> SignatureCheck:
        """The trusted key that signed ``definition`` (a definition being registered)."""
        return self._trust.verify(definition.signed_bytes(), definition.signature,
                                  capability=definition.key, now_s=self._clock.time())

    def verify(self, capability_id: str, version: str, stored: str) -> VerifiedCapability:
        """The stored JSON of ``capability_id@version``, parsed and verified."""
        digest = definition_hash(stored)
        cache_key = (capability_id, version, digest)
        now_s = self._clock.time()
        cached = self._verified.get(cache_key)
        if cached is not None:
            # The signature is known good for these exact bytes; the key may
            # have expired or been removed since.
            self._refuse_retired(cached.key_id, cached.definition.key)
            self._trust.check_key(cached.key_id, capability=cached.definition.key, now_s=now_s)
            return cached
        source = f"{catalog_definitions_key(capability_id)}[{version}]"
        definition = parse_definition(stored, source=source)
        if (definition.id, definition.version) != (capability_id, version):
            # A validly signed definition copied under another id or version.
            raise SignatureMismatchError(
                f"refused: stored as {capability_id}@{version} but the definition "
                f"is {definition.key}", capability=f"{capability_id}@{version}")
        self._refuse_retired(signature_key_id(definition.signature), definition.key)
        check = self._trust.verify(definition.signed_bytes(), definition.signature,
                                   capability=definition.key, now_s=now_s)
        verified = self._verified[cache_key] = VerifiedCapability(definition, check.key_id, digest)
        return verified

    def _refuse_retired(self, key_id: str | None, capability: str) -> None:
        removed_at = self._retired.get(key_id) if key_id else None
        if removed_at is not None:
            raise UntrustedKeyError(
                f"refused: signed by key {key_id}, which is no longer trusted (removed "
                f"from this process's trusted keys at {removed_at})", capability=capability)

    def replace_trust(self, trust: TrustStore) -> TrustChange:
        """Trust exactly ``trust``'s keys from now on (see the catalog's method)."""
        old = {key.key_id: key for key in self._trust.keys}
        new = {key.key_id: key for key in trust.keys}
        removed = sorted(old.keys() - new.keys())
        changed = sorted(key_id for key_id in old.keys() & new.keys()
                         if (old[key_id].expires_at, old[key_id].name)
                         != (new[key_id].expires_at, new[key_id].name))
        removed_at = iso_utc(self._clock.time())
        self._retired.update(dict.fromkeys(removed, removed_at))
        for key_id in new:
            self._retired.pop(key_id, None)
        self._trust = trust
        self._verified = {cache_key: verified for cache_key, verified in self._verified.items()
                          if verified.key_id in new}
        return TrustChange(added=tuple(sorted(new.keys() - old.keys())), removed=tuple(removed),
                           changed=tuple(changed), trusted=tuple(sorted(new)))
