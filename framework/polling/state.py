"""Per-connector state in Redis, and the fenced, atomic publish+save step.

``connector:state:{name}`` is a hash (generation, etag, lastModified, cursors,
updatedAt); ``connector:state:{name}:versions`` maps each item id to the
version last published. Both change only through ``commit.lua``, which also
XADDs the items: publishing an item and recording its version are one atomic
step, so a crash at any moment neither loses nor repeats an item version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol, cast

import orjson
from redis.asyncio import Redis

from framework.core.clock import Clock, iso_utc
from framework.core.connections import redis_failures
from framework.core.keys import COMMIT_CHUNK_ITEMS, KeyScheme
from framework.core.scripts import lua
from framework.polling.append import Appender, DedupeWindow
from framework.polling.commit_channel import open_channel
from framework.polling.commit_session import CommitSession, SentChunk
from framework.polling.config import ConnectorConfig
from framework.polling.durability import ReplicaAcks
from framework.polling.slots import check_one_slot

NO_ACKS = ReplicaAcks()
# Versions read per round trip when they are not cached: a reply small enough to be
# parsed in well under a millisecond.
VERSIONS_PER_READ = 1_000


class Fence(Protocol):
    """Whatever holds the lease token that commits are fenced with."""

    @property
    def token(self) -> str: ...


class Change(NamedTuple):
    """One item to publish: its id, its new version and the encoded signal.

    A tuple of strings and bytes, which the garbage collector stops tracking: a
    poll holding 100,000 of them does not lengthen every full collection."""

    item_id: str
    version: str
    payload: bytes


@dataclass
class ConnectorState:
    """What a connector remembers between polls."""

    generation: str = ""
    etag: str | None = None
    last_modified: str | None = None
    cursors: dict[str, str] = field(default_factory=dict)
    item_versions: Mapping[str, str] = field(default_factory=dict)


class StateStore:
    """Loads a connector's state and commits polls (see module docstring)."""

    def __init__(
        self,
        redis: Redis,
        config: ConnectorConfig,
        fence: Fence,
        *,
        clock: Clock,
        chunk_items: int = COMMIT_CHUNK_ITEMS,
        scheme: KeyScheme | None = None,
        acks: ReplicaAcks = NO_ACKS,
        lease_key: str | None = None,
    ) -> None:
        """``scheme``: the fleet's key names (default the untagged ones, single server);
        ``acks``: how many replicas must acknowledge each commit (durability);
        ``lease_key``: the key the fence's token is checked against, when it is not the
        connector's own lease (a receiver replica's ``lease:NAME:REPLICA``)."""
        self._redis = redis
        self._acks = acks
        self._config = config
        self._fence = fence
        self._clock = clock
        self._chunk_items = chunk_items
        self._commit = redis.register_script(lua("framework.polling", "commit"))
        keys = config.keys(scheme or KeyScheme())
        if lease_key is not None:
            keys = replace(keys, lease=lease_key)
        self.keys = keys
        self._keys = keys.commit_keys
        self._state_key, self._versions_key = keys.state, keys.versions
        if scheme is not None and scheme.tagged:
            check_one_slot(config.name, self._keys)
        # Versions as of ``_cached_generation``; reread only when it moves.
        self._cached_versions: dict[str, str] | None = None
        self._cached_generation = ""

    def appender(self, window: DedupeWindow) -> Appender:
        """The commit of a push source (append.lua): same fence, keys and durability."""
        return Appender(self._redis, self._config, lambda: self._fence.token, clock=self._clock,
                        keys=self.keys, acks=self._acks, window=window)

    @property
    def redis(self) -> Redis:
        """The client commits go through (a receiver's shared counters use it too)."""
        return self._redis

    def invalidate(self) -> None:
        self._cached_versions = None

    async def load(self) -> ConnectorState:
        name = self._config.name
        async with redis_failures(name):
            if self._cached_versions is not None:
                # decode_responses=True (framework.core.connections): keys and values are str.
                fields = cast(dict[str, str], await self._redis.hgetall(self._state_key))
                if fields.get("generation", "") == self._cached_generation:
                    return _state_from(fields, self._cached_versions)
            # Not MULTI: Redis refuses EXEC when over maxmemory, even for reads. A commit
            # after the generation was read is caught by the generation check of the
            # next commit, however many reads the versions take.
            fields = cast(dict[str, str], await self._redis.hgetall(self._state_key))
            versions = await self._read_versions()
        self._cached_versions = versions
        self._cached_generation = fields.get("generation", "")
        return _state_from(fields, versions)

    async def _read_versions(self) -> dict[str, str]:
        """Every known version, :data:`VERSIONS_PER_READ` at a time (HSCAN): one
        HGETALL of 100,000 versions is a reply parsed in one step, which holds the
        event loop for 100 ms and more. HSCAN may give a field twice (harmless here)
        and never misses one that exists throughout the scan; a field that a commit
        changes meanwhile is caught by the generation, which was read first."""
        versions: dict[str, str] = {}
        cursor = 0
        while True:
            cursor, page = await self._redis.hscan(
                self._versions_key, cursor, count=VERSIONS_PER_READ)
            versions.update(cast(dict[str, str], page))
            if cursor == 0:
                return versions

    @asynccontextmanager
    async def open_commit(self, state: ConnectorState) -> AsyncIterator[CommitSession]:
        """A commit on top of ``state`` that takes changes as they are found
        (:mod:`framework.polling.commit_session`)."""
        session = CommitSession(
            config=self._config,
            channel=open_channel(self._redis, self._commit, self._keys),
            token=lambda: self._fence.token,
            generation=state.generation,
            chunk_items=self._chunk_items,
            on_applied=self._apply_to_cache,
            acks=self._acks,
        )
        try:
            yield session
        except BaseException:
            # Refused, or it may or may not have run: reread before the next commit.
            self.invalidate()
            raise
        finally:
            await session.aclose()

    def commit_meta(
        self,
        state: ConnectorState,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        cursors: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The state fields a commit saves with its last chunk."""
        meta = {"updatedAt": iso_utc(self._clock.time())}
        if etag is not None:
            meta["etag"] = etag
        if last_modified is not None:
            meta["lastModified"] = last_modified
        if cursors:
            meta["cursors"] = orjson.dumps({**state.cursors, **cursors}).decode()
        return meta

    async def commit(
        self,
        state: ConnectorState,
        changes: Sequence[Change],
        *,
        removed: Sequence[str] = (),
        etag: str | None = None,
        last_modified: str | None = None,
        cursors: Mapping[str, str] | None = None,
    ) -> None:
        """Publish ``changes``, forget ``removed`` and save the new state, in
        atomic chunks (the meta with the last).

        Raises :class:`LeaseLostError` if this instance's token no longer holds
        the lease, :class:`StateConflictError` if the state moved since
        ``load``. Either way nothing of the failing chunk, nor of any chunk after
        it, was applied.
        """
        meta = self.commit_meta(state, etag=etag, last_modified=last_modified, cursors=cursors)
        async with self.open_commit(state) as session:
            for change in changes:
                if session.add(change):
                    await session.send_full()
            await session.finish(removed, meta, force=True)

    def _apply_to_cache(self, old: str, new: str, chunk: SentChunk) -> None:
        if self._cached_versions is None or self._cached_generation != old:
            self.invalidate()
            return
        versions = self._cached_versions
        for item_id in chunk.removed:
            versions.pop(item_id, None)
        for item_id, version, _ in chunk.changes:
            versions[item_id] = version
        self._cached_generation = new

    async def reset(self) -> None:
        """Forget everything: the next poll republishes every item."""
        async with redis_failures(self._config.name):
            await self._redis.delete(self._state_key, self._versions_key)
        self.invalidate()


def _state_from(fields: Mapping[str, str], versions: Mapping[str, str]) -> ConnectorState:
    cursors = orjson.loads(fields["cursors"]) if fields.get("cursors") else {}
    return ConnectorState(
        generation=fields.get("generation", ""),
        etag=fields.get("etag"),
        last_modified=fields.get("lastModified"),
        cursors=cursors,
        item_versions=versions,
    )
