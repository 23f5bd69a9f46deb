"""The capability catalog: signed capability definitions stored in Redis.

:class:`Catalog` stores signed definitions (:mod:`framework.trust.catalog.definition`),
resolves ``(id, range)`` to the newest matching version that is neither
revoked (:mod:`~framework.trust.catalog.revocation`) nor badly signed
(:mod:`~framework.trust.catalog.verification`), and applies revocations broadcast
by other processes (:meth:`Catalog.watch`, :mod:`~framework.trust.catalog.snapshots`).
:meth:`Catalog.replace_trust` swaps the trusted keys of a running process (key
rotation). See docs/catalog.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from framework.core.clock import Clock, iso_utc
from framework.core.errors import (
    CatalogError,
    InvalidDefinitionError,
    RevokedCapabilityError,
    SignatureError,
    UnknownCapabilityError,
)
from framework.core.keys import (
    CATALOG_CHANGES_CHANNEL,
    CATALOG_IDS_KEY,
    catalog_definitions_key,
    catalog_revocations_key,
)
from framework.core.logs import Logger
from framework.core.slots import is_cluster
from framework.core.versions import VersionRange, parse_version
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.definition import (
    CapabilityDefinition,
    Condition,
    RollbackAction,
    RollbackStrategy,
    Sector,
    parse_definition,
)
from framework.trust.catalog.revocation import Revocation
from framework.trust.catalog.signing import TrustStore
from framework.trust.catalog.skips import SkippedVersions
from framework.trust.catalog.snapshots import Snapshot, SnapshotCache, announce_change
from framework.trust.catalog.verification import (
    TrustChange,
    VerifiedCapability,
    Verifier,
    definition_hash,
)

# The definition models are part of the catalog's API (the CLI imports them here).
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


class Catalog:
    """The capability catalog in Redis, as seen by one process.

    ``trust`` holds the public keys this process accepts. Without :meth:`watch`
    running every :meth:`resolve` reads Redis; while it runs, what was read is
    kept in memory and dropped the moment another process publishes a change
    (a registration or a revocation), so revocations apply within the pub/sub
    delivery time. Signature checks are cached per (id, version, hash of the
    stored JSON): a changed stored definition is checked again. The trusted keys
    can be swapped while it runs (:meth:`replace_trust`). With ``audit``, each stored
    version a lookup skips for its signature or validity is recorded in the audit
    chain once (:mod:`~framework.trust.catalog.skips`).
    """

    def __init__(self, redis: Redis, trust: TrustStore, *, clock: Clock,
                 logger: Logger, audit: AuditChain | None = None) -> None:
        self._redis = redis
        self._tagged = is_cluster(redis)  # a capability's keys share its tag's slot
        self._clock = clock
        self._log = logger
        self._verifier = Verifier(trust, clock)
        self._snapshots = SnapshotCache(redis, self._log)
        self._skips = (None if audit is None
                       else SkippedVersions(redis, audit, clock=clock, logger=logger))

    @property
    def watching(self) -> asyncio.Event:
        """Set while :meth:`watch` is subscribed (tests and health checks wait on it)."""
        return self._snapshots.watching

    @property
    def revocations_applied(self) -> int:
        """Revocations other processes published that this one applied."""
        return self._snapshots.revocations_applied

    # -- reading -------------------------------------------------------------

    async def resolve(self, capability_id: str,
                      version_range: str | None = None) -> VerifiedCapability:
        """The newest version in the range that is neither revoked nor badly signed.

        Raises :class:`UnknownCapabilityError` (nothing registered in the range),
        :class:`RevokedCapabilityError` (every match revoked: the newest's reason)
        or the :class:`SignatureError` of the newest match that is not revoked.
        """
        wanted = VersionRange.parse(version_range)
        snapshot = await self._snapshots.load(capability_id)
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
                first_refusal = first_refusal or revocation.refusal(version)
                continue
            try:
                return self._verifier.verify(capability_id, version, snapshot.definitions[version])
            except (SignatureError, InvalidDefinitionError) as exc:
                self._log.warning("catalog_version_refused", capability=capability_id,
                                  version=version, error=str(exc))
                if self._skips is not None:
                    await self._skips.record(capability_id, version,
                                             snapshot.definitions[version], exc)
                if first_refusal is None or isinstance(first_refusal, RevokedCapabilityError):
                    first_refusal = exc
        assert first_refusal is not None
        raise first_refusal

    async def show(self, capability_id: str, version: str | None = None) -> CapabilityDefinition:
        """The stored definition (the newest if ``version`` is None), unverified."""
        snapshot = await self._snapshots.load(capability_id)
        if not snapshot.definitions:
            raise UnknownCapabilityError("not in the catalog", capability=capability_id)
        chosen = version or max(snapshot.definitions, key=parse_version)
        stored = snapshot.definitions.get(chosen)
        if stored is None:
            raise UnknownCapabilityError("this version is not registered",
                                         capability=f"{capability_id}@{chosen}")
        source = f"{catalog_definitions_key(capability_id, tagged=self._tagged)}[{chosen}]"
        return parse_definition(stored, source=source)

    async def ids(self) -> list[str]:
        return sorted(str(member) for member in await self._redis.smembers(CATALOG_IDS_KEY))

    async def entries(self) -> list[CatalogEntry]:
        """Every stored version with its verification outcome and revocation."""
        rows: list[CatalogEntry] = []
        for capability_id in await self.ids():
            try:
                snapshot = await self._snapshots.load(capability_id)
            except CatalogError as exc:
                rows.append(CatalogEntry(capability_id, "*", None, str(exc), None))
                continue
            rows.extend(self._entries_of(capability_id, snapshot))
        return rows

    def _entries_of(self, capability_id: str, snapshot: Snapshot) -> list[CatalogEntry]:
        where = catalog_definitions_key(capability_id, tagged=self._tagged)
        rows = [CatalogEntry(capability_id, field_name, None, f"{where}[{field_name}]: {problem}",
                             None) for field_name, problem in snapshot.bad_fields.items()]
        for version in sorted(snapshot.definitions, key=parse_version):
            problem: str | None = None
            key_id: str | None = None
            try:
                key_id = self._verifier.verify(capability_id, version,
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
        return self._verifier.replace_trust(trust)

    # -- writing -------------------------------------------------------------

    async def register(self, definition: CapabilityDefinition, *,
                       replace: bool = False) -> VerifiedCapability:
        """Store a signed definition; refuses a bad signature, a version inside a
        revoked range and (unless ``replace``) a changed copy of a stored version."""
        check = self._verifier.check_signature(definition)
        snapshot = await self._snapshots.fresh(definition.id)
        revocation = snapshot.revocation_of(definition.version)
        if revocation is not None:
            raise revocation.refusal(definition.version)
        stored = definition.to_json().decode()
        existing = snapshot.definitions.get(definition.version)
        if existing is not None and existing != stored and not replace:
            raise InvalidDefinitionError(
                "this version is already registered with a different definition "
                "(register a new version, or pass replace)", capability=definition.key)
        # The definition, then the index of ids (a crash between them leaves a definition
        # that resolves but is not listed until registered again), then the announcement:
        # each in its own slot on a Cluster, and a watcher told of a change reads it.
        await self._redis.hset(catalog_definitions_key(definition.id, tagged=self._tagged),
                               definition.version, stored)
        await self._redis.sadd(CATALOG_IDS_KEY, definition.id)
        await self._redis.publish(CATALOG_CHANGES_CHANNEL,
                                  announce_change(definition.id, "register"))
        self._snapshots.forget(definition.id)
        self._log.info("catalog_registered", capability=definition.key, key_id=check.key_id)
        return VerifiedCapability(definition, check.key_id, definition_hash(stored))

    async def revoke(self, capability_id: str, version_range: str, reason: str) -> Revocation:
        """Record and broadcast that every version in the range (registered now or
        later) must not run; returns the revocation with the versions it hit."""
        wanted = VersionRange.parse(version_range)
        if not reason.strip():
            raise CatalogError("a revocation needs a reason", capability=capability_id)
        snapshot = await self._snapshots.fresh(capability_id)
        if not snapshot.definitions:
            raise UnknownCapabilityError("not in the catalog", capability=capability_id)
        hit = tuple(sorted((v for v in snapshot.definitions if wanted.matches(v)),
                           key=parse_version))
        revocation = Revocation(capability_id, wanted.text, reason.strip(),
                                iso_utc(self._clock.time()), hit)
        # Written, then announced: a watcher told of the revocation reads it.
        await self._redis.hset(catalog_revocations_key(capability_id, tagged=self._tagged),
                               wanted.text, revocation.to_json())
        await self._redis.publish(CATALOG_CHANGES_CHANNEL,
                                  announce_change(capability_id, "revoke"))
        self._snapshots.forget(capability_id)
        self._log.warning("catalog_revoked", capability=capability_id, range=wanted.text,
                          versions=list(hit), reason=revocation.reason)
        return revocation

    # -- watching ------------------------------------------------------------

    async def watch(self) -> None:
        """Apply every other process's changes as they are published; runs until
        cancelled. A broken subscription is retried; meanwhile (and after each
        resubscription) everything is read from Redis again, so no change is missed."""
        await self._snapshots.watch()


@dataclass(frozen=True)
class CatalogEntry:
    """One stored version, for ``catalog list`` and ``catalog verify``."""

    capability_id: str
    version: str
    key_id: str | None
    problem: str | None
    revocation: Revocation | None
