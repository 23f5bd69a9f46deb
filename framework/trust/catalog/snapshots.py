"""What the catalog read from Redis, per capability, kept while it cannot be stale.

Without :meth:`SnapshotCache.watch` running every read goes to Redis; while it
runs, what was read is kept and dropped the moment another process publishes a
change (a registration or a revocation) on the catalog's channel, so revocations
apply within the pub/sub delivery time. After any gap in the subscription
everything is forgotten, so no change is missed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis

from framework.core.channel_watch import ChannelWatch
from framework.core.errors import VersionError
from framework.core.keys import (
    CATALOG_CHANGES_CHANNEL,
    CATALOG_WATCH_RETRY_S,
    catalog_definitions_key,
    catalog_revocations_key,
)
from framework.core.logs import Logger
from framework.core.slots import is_cluster
from framework.core.versions import parse_version
from framework.trust.catalog.revocation import Revocation


@dataclass
class Snapshot:
    """One capability as read from Redis: version -> stored JSON, and its revocations."""

    definitions: dict[str, str]
    revocations: list[Revocation] = field(default_factory=list)
    # Hash fields that are not versions (written by hand): reported, never run.
    bad_fields: dict[str, str] = field(default_factory=dict)

    def revocation_of(self, version: str) -> Revocation | None:
        return next((r for r in self.revocations if r.covers(version)), None)


def announce_change(capability_id: str, kind: str) -> str:
    """The message published on the catalog's channel (``kind``: register, revoke)."""
    return orjson.dumps({"id": capability_id, "kind": kind}).decode()


class SnapshotCache:
    def __init__(self, redis: Redis, logger: Logger) -> None:
        self._redis = redis
        self._log = logger
        self._tagged = is_cluster(redis)  # a capability's keys share its tag's slot
        self._snapshots: dict[str, Snapshot] = {}
        self._generation = 0
        # Subscribed, no change goes unseen and caching is safe; after any gap in it,
        # whatever was read may be stale: forget it.
        self._changes = ChannelWatch(redis, CATALOG_CHANGES_CHANNEL, self._apply,
                                     logger=logger, name="catalog_watch",
                                     retry_s=CATALOG_WATCH_RETRY_S, on_gap=self.forget_all)
        self.revocations_applied = 0

    @property
    def watching(self) -> asyncio.Event:
        return self._changes.subscribed

    async def load(self, capability_id: str) -> Snapshot:
        cached = self._snapshots.get(capability_id) if self.watching.is_set() else None
        if cached is not None:
            return cached
        generation = self._generation
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(catalog_definitions_key(capability_id, tagged=self._tagged))
            pipe.hgetall(catalog_revocations_key(capability_id, tagged=self._tagged))
            definitions, revocations = await pipe.execute()
        where = catalog_revocations_key(capability_id, tagged=self._tagged)
        snapshot = Snapshot({}, [
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
        if self.watching.is_set() and generation == self._generation:
            self._snapshots[capability_id] = snapshot
        return snapshot

    async def fresh(self, capability_id: str) -> Snapshot:
        """Read from Redis whatever is kept (before a write)."""
        self.forget(capability_id)
        return await self.load(capability_id)

    def forget(self, capability_id: str) -> None:
        self._generation += 1
        self._snapshots.pop(capability_id, None)

    def forget_all(self) -> None:
        self._generation += 1
        self._snapshots.clear()

    async def watch(self) -> None:
        await self._changes.run()

    def _apply(self, data: object) -> None:
        try:
            change = orjson.loads(data) if isinstance(data, str | bytes) else None
        except orjson.JSONDecodeError:
            change = None
        capability_id = change.get("id") if isinstance(change, dict) else None
        if not isinstance(change, dict) or not isinstance(capability_id, str):
            # Not ours to understand: forget everything rather than miss a change.
            self._log.warning("catalog_change_unreadable", data=repr(data)[:200])
            self.forget_all()
            return
        self.forget(capability_id)
        if change.get("kind") == "revoke":
            self.revocations_applied += 1
            self._log.info("catalog_revocation_applied", capability=capability_id)
