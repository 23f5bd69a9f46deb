"""One commit of a poll (or of a page), chunk by chunk, while the poll still diffs.

The poller hands changes to :meth:`CommitSession.add` as it finds them; every
``chunk_items`` of them go out as one ``commit.lua`` call, so a poll holds one
chunk of encoded changes (plus the few in flight), never the whole poll's.
:meth:`CommitSession.finish` sends the rest, the removals and, with the last
chunk, the state fields (etag, cursors, updatedAt), then waits for every reply.

Each chunk expects the generation its predecessor moves to (the script adds
exactly one) and names that predecessor, so the lease and generation checks stay
exact with several chunks in flight: a refused chunk applies nothing, nor does
any chunk after it. The first refusal is raised as :class:`LeaseLostError` or
:class:`StateConflictError`; what was applied before it stays.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from redis import exceptions as redis_errors

from framework.core.connections import redis_failures
from framework.core.errors import LeaseLostError, StateConflictError
from framework.polling.commit_channel import Arg, ChunkChannel
from framework.polling.config import ConnectorConfig
from framework.polling.durability import ReplicaAcks, check_acks

# Chunks written ahead of their replies: enough to keep Redis and the client both
# busy, few enough that the changes held for them stay small.
CHUNKS_IN_FLIGHT = 3

# An item to publish: (item_id, version, payload), as ``state.Change``.
ChangeTuple = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class SentChunk:
    """A chunk whose reply is awaited, kept to update the versions cache with."""

    expected: str
    changes: Sequence[ChangeTuple]
    removed: Sequence[str]


# Called with each applied chunk, in order: (generation before, after, chunk).
OnApplied = Callable[[str, str, SentChunk], None]


class CommitSession:
    """See the module docstring. Always ``aclose`` it (``finally``)."""

    def __init__(
        self,
        *,
        config: ConnectorConfig,
        channel: ChunkChannel,
        token: Callable[[], str],
        generation: str,
        chunk_items: int,
        on_applied: OnApplied,
        acks: ReplicaAcks,
    ) -> None:
        self._config = config
        self._acks = acks
        self._channel = channel
        self._token = token
        self._generation = generation  # what the next chunk sent expects
        self._chunk_items = chunk_items
        self._on_applied = on_applied
        self._buffer: list[ChangeTuple] = []
        self._sent: deque[SentChunk] = deque()
        self._nonce = secrets.token_hex(6)
        self._previous_id = ""
        self._chunks = 0

    def add(self, change: ChangeTuple) -> bool:
        """Buffer ``change``; True when a chunk is full and :meth:`send_full`
        is due (not a coroutine: it runs once per item, sending once per chunk)."""
        buffer = self._buffer
        buffer.append(change)
        return len(buffer) >= self._chunk_items

    async def send_full(self) -> None:
        """Send the buffered changes as one chunk (without the state fields)."""
        changes, self._buffer = self._buffer, []
        await self._send(changes, (), {})

    async def finish(self, removed: Sequence[str], meta: Mapping[str, str], *, force: bool) -> None:
        """Send the rest (``meta`` with the last chunk) and wait for every reply.
        ``force``: commit ``meta`` even when nothing else is to be sent."""
        size = self._chunk_items
        removals = [removed[i : i + size] for i in range(0, len(removed), size)]
        if not (self._buffer or removals or self._chunks or force):
            return
        if self._buffer or not removals:
            changes, self._buffer = self._buffer, []
            await self._send(changes, (), {} if removals else meta)
        for index, gone in enumerate(removals):
            await self._send((), gone, meta if index == len(removals) - 1 else {})
        while self._sent:
            await self._receive()
        if self._acks.required:
            await self._wait_for_replicas()

    async def _wait_for_replicas(self) -> None:
        """Durability: the commit counts only once enough replicas hold every chunk
        (:mod:`framework.polling.durability`); otherwise ReplicasNotAckedError."""
        acks = self._acks
        async with redis_failures(self._config.name):
            acked = await self._channel.wait_replicas(acks.replicas, acks.timeout_ms)
        check_acks(acked, acks, connector=self._config.name)

    async def _send(
        self,
        changes: Sequence[ChangeTuple],
        removed: Sequence[str],
        meta: Mapping[str, str],
    ) -> None:
        while self._channel.in_flight >= CHUNKS_IN_FLIGHT:
            await self._receive()
        self._chunks += 1
        chunk_id = f"{self._nonce}:{self._chunks}"
        args = self._args(chunk_id, changes, removed, meta)
        self._sent.append(SentChunk(self._generation, changes, removed))
        async with redis_failures(self._config.name):
            await self._channel.send(args)
        self._previous_id = chunk_id
        self._generation = str(int(self._generation or 0) + 1)

    def _args(
        self,
        chunk_id: str,
        changes: Sequence[ChangeTuple],
        removed: Sequence[str],
        meta: Mapping[str, str],
    ) -> list[Arg]:
        config = self._config
        args: list[Arg] = [
            self._token(), self._generation, config.stream_max_len, config.name, config.type,
            chunk_id, self._previous_id, len(meta),
        ]  # fmt: skip
        for key, value in meta.items():
            args += (key, value)
        args.append(len(removed))
        args.extend(removed)
        for change in changes:
            args.extend(change)
        return args

    async def _receive(self) -> None:
        chunk = self._sent[0]
        try:
            async with redis_failures(self._config.name):
                generation = str(await self._channel.receive())
        except redis_errors.ResponseError as exc:
            raise commit_refusal(exc, self._config.name) from None
        self._sent.popleft()
        self._on_applied(chunk.expected, generation, chunk)

    async def aclose(self) -> None:
        await self._channel.aclose()


def commit_refusal(exc: redis_errors.ResponseError, connector: str) -> Exception:
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
