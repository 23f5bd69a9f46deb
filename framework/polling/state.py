"""Per-connector state in Redis, and the fenced, atomic publish+save step.

``connector:state:{name}`` is a hash (generation, etag, lastModified, cursors,
updatedAt); ``connector:state:{name}:versions`` maps each item id to the
version last published. Both change only through ``commit.lua``, which also
XADDs the items: publishing an item and recording its version are one atomic
step, so a crash at any moment neither loses nor repeats an item version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, cast

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core.clock import Clock, iso_utc
from framework.core.connections import redis_failures
from framework.core.errors import LeaseLostError, StateConflictError
from framework.core.keys import COMMIT_CHUNK_ITEMS, lease_key, state_key, versions_key
from framework.core.scripts import lua
from framework.polling.config import ConnectorConfig
from framework.polling.durability import ReplicaAcks, execute_acknowledged, queue_script

NO_ACKS = ReplicaAcks()


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
        acks: ReplicaAcks = NO_ACKS,
    ) -> None:
        """``acks``: how many replicas must acknowledge each commit (durability)."""
        self._redis = redis
        self._acks = acks
        self._config = config
        self._fence = fence
        self._clock = clock
        self._chunk_items = chunk_items
        self._commit = redis.register_script(lua("framework.polling", "commit"))
        self._keys = [
            lease_key(config.name),
            state_key(config.name),
            versions_key(config.name),
            config.output_stream,
        ]
        # Versions as of ``_cached_generation``; reread only when it moves.
        self._cached_versions: dict[str, str] | None = None
        self._cached_generation = ""

    def invalidate(self) -> None:
        self._cached_versions = None

    async def load(self) -> ConnectorState:
        name = self._config.name
        async with redis_failures(name):
            if self._cached_versions is not None:
                # decode_responses=True (framework.core.connections): keys and values are str.
                fields = cast(dict[str, str], await self._redis.hgetall(state_key(name)))
                if fields.get("generation", "") == self._cached_generation:
                    return _state_from(fields, self._cached_versions)
            # Not MULTI: Redis refuses EXEC when over maxmemory, even for reads. A commit
            # between the two reads is caught by the generation check of the next commit.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(state_key(name))
                pipe.hgetall(versions_key(name))
                fields, versions = await pipe.execute()
        self._cached_versions = versions
        self._cached_generation = fields.get("generation", "")
        return _state_from(fields, versions)

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
        ``load``. Either way nothing of the failing chunk was applied.
        """
        meta = {"updatedAt": iso_utc(self._clock.time())}
        if etag is not None:
            meta["etag"] = etag
        if last_modified is not None:
            meta["lastModified"] = last_modified
        if cursors:
            meta["cursors"] = orjson.dumps({**state.cursors, **cursors}).decode()
        generation = state.generation
        steps = self._steps(changes, removed)
        for index, (chunk, gone) in enumerate(steps):
            last = index == len(steps) - 1
            generation = await self._commit_chunk(generation, chunk, gone, meta if last else {})

    def _steps(
        self, changes: Sequence[Change], removed: Sequence[str]
    ) -> list[tuple[Sequence[Change], Sequence[str]]]:
        """The changes, then the removals, ``chunk_items`` per script: one script
        over 100,000 ids would hold Redis (and the lease renewals) for seconds."""
        size = self._chunk_items
        steps: list[tuple[Sequence[Change], Sequence[str]]] = [
            (changes[i : i + size], ()) for i in range(0, len(changes), size)
        ]
        steps += [((), removed[i : i + size]) for i in range(0, len(removed), size)]
        return steps or [((), ())]

    async def _commit_chunk(
        self,
        generation: str,
        chunk: Sequence[Change],
        removed: Sequence[str],
        meta: Mapping[str, str],
    ) -> str:
        config = self._config
        args: list[str | bytes | int] = [
            self._fence.token,
            generation,
            config.stream_max_len,
            config.name,
            config.type,
            len(meta),
        ]
        for key, value in meta.items():
            args += (key, value)
        args.append(len(removed))
        args.extend(removed)
        for change in chunk:
            args += (change.item_id, change.version, change.payload)
        try:
            async with redis_failures(config.name):
                new_generation = str(await self._run_commit(args))
        except redis_errors.ResponseError as exc:
            self.invalidate()
            raise _commit_refusal(exc, config.name) from None
        except BaseException:
            # The script may or may not have run: reread before the next commit.
            self.invalidate()
            raise
        self._apply_to_cache(generation, new_generation, chunk, removed)
        return new_generation

    async def _run_commit(self, args: list[str | bytes | int]) -> object:
        """The commit script's answer; with ``acks``, once enough replicas hold it."""
        if not self._acks.required:
            return await self._commit(keys=self._keys, args=args)
        (answer,) = await execute_acknowledged(
            self._redis, self._acks,
            lambda pipe: queue_script(pipe, self._commit, self._keys, args),
            connector=self._config.name)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _apply_to_cache(
        self, old: str, new: str, chunk: Sequence[Change], removed: Sequence[str]
    ) -> None:
        if self._cached_versions is None or self._cached_generation != old:
            self.invalidate()
            return
        versions = self._cached_versions
        for item_id in removed:
            versions.pop(item_id, None)
        for change in chunk:
            versions[change.item_id] = change.version
        self._cached_generation = new

    async def reset(self) -> None:
        """Forget everything: the next poll republishes every item."""
        async with redis_failures(self._config.name):
            await self._redis.delete(state_key(self._config.name), versions_key(self._config.name))
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


def _commit_refusal(exc: redis_errors.ResponseError, connector: str) -> Exception:
    message = str(exc)
    if message.startswith("LEASE_LOST"):
        holder = message.removeprefix("LEASE_LOST").strip()
        return LeaseLostError(f"lease is held by {holder}; commit refused", connector=connector)
    if message.startswith("STATE_CONFLICT"):
        return StateConflictError(
            "state changed since it was read (another writer or a reset); will reload",
            connector=connector,
        )
    return exc
