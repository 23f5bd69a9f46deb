"""The capability catalog: signed capability definitions stored in Redis.

:class:`Catalog` stores signed definitions (:mod:`framework.trust.catalog.definition`),
resolves ``(id, range)`` to the newest matching version that is neither
revoked nor badly signed, and applies revocations broadcast by other processes
(:meth:`Catalog.watch`). :meth:`Catalog.replace_trust` swaps the trusted keys of a
running process (key rotation). See docs/catalog.md.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis

from framework.core.channel_watch import ChannelWatch
from framework.core.clock import Clock, SystemClock, iso_utc
from framework.core.errors import (
    CatalogError,
    InvalidDefinitionError,
    RevokedCapabilityError,
    SignatureError,
    SignatureMismatchError,
    UnknownCapabilityError,
    UntrustedKeyError,
    VersionError,
)
from framework.core.keys import (
    CATALOG_CHANGES_CHANNEL,
    CATALOG_IDS_KEY,
    CATALOG_WATCH_RETRY_S,
    catalog_definitions_key,
    catalog_revocations_key,
)
from framework.core.logs import Logger, get_logger
from framework.core.versions import VersionRange, parse_version
from framework.trust.catalog.definition import (
    CapabilityDefinition,
    Condition,
    RollbackAction,
    RollbackStrategy,
    Sector,
    parse_definition,
)
from framework.trust.catalog.signing import TrustStore, signature_key_id

# The definition models are part of the catalog's API (D2 and the CLI import them here).
__all__ = [
    "CapabilityDefinition",
    "Catalog",
    "CatalogEntry",
    "Condition",
    "Revocation",
    "RollbackAction",
    "RollbackStrategy",
    "Sector",
    "TrustChange",
    "VerifiedCapability",
    "parse_definition",
]


@dataclass(frozen=True)
class VerifiedCapability:
    """A definition whose signature was checked against a trusted key."""

    definition: CapabilityDefinition
    key_id: str
    # SHA-256 (hex) of the stored JSON the check was made on.
    definition_hash: str


@dataclass(frozen=True)
class TrustChange:
    """What :meth:`Catalog.replace_trust` changed, as key ids (never key material)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    # Still trusted, with another expiry or name.
    changed: tuple[str, ...]
    trusted: tuple[str, ...]


@dataclass(frozen=True)
class Revocation:
    capability_id: str
    version_range: str
    reason: str
    revoked_at: str
    # The registered versions the range matched when it was recorded.
    versions: tuple[str, ...] = ()

    def covers(self, version: str) -> bool:
        return VersionRange.parse(self.version_range).matches(version)

    def to_json(self) -> str:
        return orjson.dumps({
            "id": self.capability_id, "range": self.version_range, "reason": self.reason,
            "revokedAt": self.revoked_at, "versions": list(self.versions),
        }).decode()

    @classmethod
    def from_json(cls, text: str, *, source: str) -> Revocation:
        """Parse a stored revocation; one that cannot be read is an error (never
        ignored: that would run what an operator revoked)."""
        try:
            raw = orjson.loads(text)
            revocation = cls(str(raw["id"]), str(raw["range"]), str(raw["reason"]),
                             str(raw["revokedAt"]), tuple(raw.get("versions", ())))
            VersionRange.parse(revocation.version_range)
        except (orjson.JSONDecodeError, KeyError, TypeError, VersionError) as exc:
            raise InvalidDefinitionError(
                f"{source}: unreadable revocation ({type(exc).__name__}: {exc}); "
                "nothing of this capability runs until it is fixed") from None
        return revocation


@dataclass
class _Snapshot:
    """One capability as read from Redis: version -> stored JSON, and its revocations."""

    definitions: dict[str, str]
    revocations: list[Revocation] = field(default_factory=list)
    # Hash fields that are not versions (written by hand): reported, never run.
    bad_fields: dict[str, str] = field(default_factory=dict)

    def revocation_of(self, version: str) -> Revocation | None:
        return next((r for r in self.revocations if r.covers(version)), None)


def _hash(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()


class Catalog:
    """The capability catalog in Redis, as seen by one process.

    ``trust`` holds the public keys this process accepts. Without :meth:`watch`
    running every :meth:`resolve` reads Redis; while it runs, what was read is
    kept in memory and dropped the moment another process publishes a change
    (a registration or a revocation), so revocations apply within the pub/sub
    delivery time. Signature checks are cached per (id, version, hash of the
    stored JSON): a changed stored definition is checked again. The trusted keys
    can be swapped while it runs (:meth:`replace_trust`).
    """

    def __init__(self, redis: Redis, trust: TrustStore, *, clock: Clock | None = None,
                 logger: Logger | None = None) -> None:
        self._redis = redis
        self._trust = trust
        self._clock = clock or SystemClock()
        self._log = logger or get_logger(component="catalog")
        self._snapshots: dict[str, _Snapshot] = {}
        self._generation = 0
        self._verified: dict[tuple[str, str, str], VerifiedCapability] = {}
        # Key id -> when replace_trust stopped trusting it: their refusals say so.
        self._retired: dict[str, str] = {}
        # Subscribed, no change goes unseen and caching is safe; after any gap in it,
        # whatever was read may be stale: forget it.
        self._changes = ChannelWatch(redis, CATALOG_CHANGES_CHANNEL, self._apply,
                                     logger=self._log, name="catalog_watch",
                                     retry_s=CATALOG_WATCH_RETRY_S, on_gap=self._forget_all)
        self.revocations_applied = 0

    @property
    def watching(self) -> asyncio.Event:
        """Set while :meth:`watch` is subscribed (tests and health checks wait on it)."""
        return self._changes.subscribed

    # -- reading -------------------------------------------------------------

    async def _load(self, capability_id: str) -> _Snapshot:
        cached = self._snapshots.get(capability_id) if self._changes.subscribed.is_set() else None
        if cached is not None:
            return cached
        generation = self._generation
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(catalog_definitions_key(capability_id))
            pipe.hgetall(catalog_revocations_key(capability_id))
            definitions, revocations = await pipe.execute()
        where = catalog_revocations_key(capability_id)
        snapshot = _Snapshot({}, [
            Revocation.from_json(text, source=f"{where}[{version_range}]")
            for version_range, text in revocations.items()])
        for version, stored in definitions.items():
            try:
                parse_version(version)
            except VersionError as exc:
                snapshot.bad_fields[version] = str(exc)
                continue
            snapshot.definitions[version] = stored
        # Keep it only if no change was announced while we were reading.
        if self._changes.subscribed.is_set() and generation == self._generation:
            self._snapshots[capability_id] = snapshot
        return snapshot

    def _verify(self, capability_id: str, version: str, stored: str) -> VerifiedCapability:
        digest = _hash(stored)
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

    async def resolve(self, capability_id: str,
                      version_range: str | None = None) -> VerifiedCapability:
        """The newest version in the range that is neither revoked nor badly signed.

        Raises :class:`UnknownCapabilityError` (nothing registered in the range),
        :class:`RevokedCapabilityError` (every match revoked: the newest's reason)
        or the :class:`SignatureError` of the newest match that is not revoked.
        """
        wanted = VersionRange.parse(version_range)
        snapshot = await self._load(capability_id)
        if not snapshot.definitions:
            raise UnknownCapabilityError("not in the catalog", capability=capability_id)
        matching = sorted((v for v in snapshot.definitions if wanted.matches(v)),
                          key=parse_version, reverse=True)
        if not matching:
            raise UnknownCapabilityError(
                f"no registered version matches {wanted} "
                f"(registered: {', '.join(sorted(snapshot.definitions, key=parse_version))})",
                capability=capability_id,
            )
        first_refusal: CatalogError | None = None
        for version in matching:
            revocation = snapshot.revocation_of(version)
            if revocation is not None:
                first_refusal = first_refusal or _revoked(capability_id, version, revocation)
                continue
            try:
                return self._verify(capability_id, version, snapshot.definitions[version])
            except (SignatureError, InvalidDefinitionError) as exc:
                self._log.warning("catalog_version_refused", capability=capability_id,
                                  version=version, error=str(exc))
                if first_refusal is None or isinstance(first_refusal, RevokedCapabilityError):
                    first_refusal = exc
        assert first_refusal is not None
        raise first_refusal

    async def show(self, capability_id: str, version: str | None = None) -> CapabilityDefinition:
        """The stored definition (the newest if ``version`` is None), unverified."""
        snapshot = await self._load(capability_id)
        if not snapshot.definitions:
            raise UnknownCapabilityError("not in the catalog", capability=capability_id)
        chosen = version or max(snapshot.definitions, key=parse_version)
        stored = snapshot.definitions.get(chosen)
        if stored is None:
            raise UnknownCapabilityError("this version is not registered",
                                         capability=f"{capability_id}@{chosen}")
        source = f"{catalog_definitions_key(capability_id)}[{chosen}]"
        return parse_definition(stored, source=source)

    async def ids(self) -> list[str]:
        return sorted(str(member) for member in await self._redis.smembers(CATALOG_IDS_KEY))

    async def entries(self) -> list[CatalogEntry]:
        """Every stored version with its verification outcome and revocation."""
        rows: list[CatalogEntry] = []
        for capability_id in await self.ids():
            try:
                snapshot = await self._load(capability_id)
            except CatalogError as exc:
                rows.append(CatalogEntry(capability_id, "*", None, str(exc), None))
                continue
            rows.extend(self._entries_of(capability_id, snapshot))
        return rows

    def _entries_of(self, capability_id: str, snapshot: _Snapshot) -> list[CatalogEntry]:
        where = catalog_definitions_key(capability_id)
        rows = [CatalogEntry(capability_id, field_name, None, f"{where}[{field_name}]: {problem}",
                             None) for field_name, problem in snapshot.bad_fields.items()]
        for version in sorted(snapshot.definitions, key=parse_version):
            problem: str | None = None
            key_id: str | None = None
            try:
                key_id = self._verify(capability_id, version,
                                      snapshot.definitions[version]).key_id
            except CatalogError as exc:
                problem = str(exc)
            rows.append(CatalogEntry(capability_id, version, key_id, problem,
                                     snapshot.revocation_of(version)))
        return rows

    # -- trust ---------------------------------------------------------------

    def replace_trust(self, trust: TrustStore) -> TrustChange:
        """Trust exactly ``trust``'s keys from now on (key rotation while running).

        Nothing here awaits, so every resolve on this loop sees either the old
        keys or the new ones. Verifications made with a removed key are dropped:
        each definition signed by it is refused from the next resolve on ("signed
        by key X, which is no longer trusted") until the key is trusted again. A
        definition signed by an added key resolves at once (refusals are not
        cached).
        """
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

    # -- writing -------------------------------------------------------------

    async def register(self, definition: CapabilityDefinition, *,
                       replace: bool = False) -> VerifiedCapability:
        """Store a signed definition; refuses a bad signature, a version inside a
        revoked range and (unless ``replace``) a changed copy of a stored version."""
        check = self._trust.verify(definition.signed_bytes(), definition.signature,
                                   capability=definition.key, now_s=self._clock.time())
        snapshot = await self._fresh(definition.id)
        revocation = snapshot.revocation_of(definition.version)
        if revocation is not None:
            raise _revoked(definition.id, definition.version, revocation)
        stored = definition.to_json().decode()
        existing = snapshot.definitions.get(definition.version)
        if existing is not None and existing != stored and not replace:
            raise InvalidDefinitionError(
                "this version is already registered with a different definition "
                "(register a new version, or pass replace)", capability=definition.key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(catalog_definitions_key(definition.id), definition.version, stored)
            pipe.sadd(CATALOG_IDS_KEY, definition.id)
            pipe.publish(CATALOG_CHANGES_CHANNEL, _change(definition.id, "register"))
            await pipe.execute()
        self._forget(definition.id)
        self._log.info("catalog_registered", capability=definition.key, key_id=check.key_id)
        return VerifiedCapability(definition, check.key_id, _hash(stored))

    async def revoke(self, capability_id: str, version_range: str, reason: str) -> Revocation:
        """Record and broadcast that every version in the range (registered now or
        later) must not run; returns the revocation with the versions it hit."""
        wanted = VersionRange.parse(version_range)
        if not reason.strip():
            raise CatalogError("a revocation needs a reason", capability=capability_id)
        snapshot = await self._fresh(capability_id)
        if not snapshot.definitions:
            raise UnknownCapabilityError("not in the catalog", capability=capability_id)
        hit = tuple(sorted((v for v in snapshot.definitions if wanted.matches(v)),
                           key=parse_version))
        revocation = Revocation(capability_id, wanted.text, reason.strip(),
                                iso_utc(self._clock.time()), hit)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(catalog_revocations_key(capability_id), wanted.text, revocation.to_json())
            pipe.publish(CATALOG_CHANGES_CHANNEL, _change(capability_id, "revoke"))
            await pipe.execute()
        self._forget(capability_id)
        self._log.warning("catalog_revoked", capability=capability_id, range=wanted.text,
                          versions=list(hit), reason=revocation.reason)
        return revocation

    async def _fresh(self, capability_id: str) -> _Snapshot:
        self._forget(capability_id)
        return await self._load(capability_id)

    def _forget(self, capability_id: str) -> None:
        self._generation += 1
        self._snapshots.pop(capability_id, None)

    # -- watching ------------------------------------------------------------

    async def watch(self) -> None:
        """Apply every other process's changes as they are published; runs until
        cancelled. A broken subscription is retried; meanwhile (and after each
        resubscription) everything is read from Redis again, so no change is missed."""
        await self._changes.run()

    def _forget_all(self) -> None:
        self._generation += 1
        self._snapshots.clear()

    def _apply(self, data: object) -> None:
        try:
            change = orjson.loads(data) if isinstance(data, str | bytes) else None
        except orjson.JSONDecodeError:
            change = None
        capability_id = change.get("id") if isinstance(change, dict) else None
        if not isinstance(change, dict) or not isinstance(capability_id, str):
            # Not ours to understand: forget everything rather than miss a change.
            self._log.warning("catalog_change_unreadable", data=repr(data)[:200])
            self._forget_all()
            return
        self._forget(capability_id)
        if change.get("kind") == "revoke":
            self.revocations_applied += 1
            self._log.info("catalog_revocation_applied", capability=capability_id)


@dataclass(frozen=True)
class CatalogEntry:
    """One stored version, for ``catalog list`` and ``catalog verify``."""

    capability_id: str
    version: str
    key_id: str | None
    problem: str | None
    revocation: Revocation | None


def _revoked(capability_id: str, version: str, revocation: Revocation) -> RevokedCapabilityError:
    return RevokedCapabilityError(
        f"revoked (range {revocation.version_range}, {revocation.revoked_at}): "
        f"{revocation.reason}",
        capability=f"{capability_id}@{version}", reason=revocation.reason,
    )


def _change(capability_id: str, kind: str) -> str:
    return orjson.dumps({"id": capability_id, "kind": kind}).decode()
