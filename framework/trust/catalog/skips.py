"""Versions the catalog skipped, in the audit chain: once per stored version.

When :meth:`~framework.trust.catalog.store.Catalog.resolve` passes over a stored
version it cannot trust (unsigned, signed by an untrusted or expired key, changed
after signing, invalid) and runs an older one instead, nothing was refused to any
caller, yet someone wrote a definition this fleet will not run: that is recorded as
a ``skipped`` audit record naming the capability, the version, the reason and the
SHA-256 of the stored JSON. Each (version, stored JSON) is recorded once for the
whole fleet: the first process to see it claims it in ``catalog:skipped:{id}``
(HSETNX) and appends the record; the others, and later lookups, only skip. A
version changed again in Redis is a new definition, recorded again.
"""

from __future__ import annotations

import contextlib

from redis.asyncio import Redis
from redis.exceptions import RedisError

from framework.core.clock import Clock, iso_utc
from framework.core.errors import AuditAppendError, CatalogError
from framework.core.keys import catalog_skipped_key
from framework.core.logs import Logger
from framework.core.slots import is_cluster
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.verification import definition_hash


class SkippedVersions:
    def __init__(self, redis: Redis, audit: AuditChain, *, clock: Clock, logger: Logger) -> None:
        self._redis = redis
        self._tagged = is_cluster(redis)
        self._audit = audit
        self._clock = clock
        self._log = logger
        # What this process recorded or saw claimed: later lookups cost nothing.
        self._seen: set[tuple[str, str, str]] = set()

    async def record(
        self, capability_id: str, version: str, stored: str, error: CatalogError
    ) -> None:
        """Audit that ``capability_id@version`` (``stored``) was skipped for ``error``,
        unless it already was. Never raises: a lookup must not fail for its record."""
        digest = definition_hash(stored)
        seen = (capability_id, version, digest)
        if seen in self._seen:
            return
        self._seen.add(seen)
        key, field = catalog_skipped_key(capability_id, tagged=self._tagged), f"{version}@{digest}"
        try:
            if not await self._redis.hsetnx(key, field, iso_utc(self._clock.time())):
                return
            await self._append(capability_id, version, digest, error)
        except (RedisError, AuditAppendError) as exc:
            # Unclaimed again, so the next lookup (here or elsewhere) records it.
            self._seen.discard(seen)
            self._log.warning(
                "catalog_skip_not_audited",
                capability=capability_id,
                version=version,
                error=f"{type(exc).__name__}: {exc}",
            )
            await self._unclaim(key, field)

    async def _append(
        self, capability_id: str, version: str, digest: str, error: CatalogError
    ) -> None:
        await self._audit.append(
            "skipped",
            {
                "capability": capability_id,
                "version": version,
                "reason": str(error),
                "error": type(error).__name__,
                "definitionHash": digest,
            },
        )
        self._log.warning(
            "catalog_version_skipped", capability=capability_id, version=version, reason=str(error)
        )

    async def _unclaim(self, key: str, field: str) -> None:
        # Redis down: the claim stays; the warning logged says which record was lost.
        with contextlib.suppress(RedisError):
            await self._redis.hdel(key, field)
