"""How the fenced commit's chunks reach Redis.

:class:`PipelinedChannel` writes each chunk's ``EVALSHA`` on one dedicated
connection without waiting for the reply of the chunk before: Redis runs chunk k
while the client diffs and packs chunk k+1. The command is packed by hiredis (C)
rather than by redis-py's asyncio connection (pure Python, about 40% of a poll
with 3,000 arguments per chunk). Replies come back in the order the chunks went
out, on that one connection, so chunk k+1 always reaches Redis after chunk k.

:class:`PipelinedChannel` does the same on a Redis Cluster, on a connection of the
master that owns the commit's slot (every key of a commit shares one hash tag): so
``WAIT`` after the last chunk counts that master's replicas acknowledging exactly the
commit's writes. If the slot moved meanwhile (resharding, failover), the master
answers MOVED: the poll fails as Redis being unavailable, and the cluster client,
redirected by the next poll's reads, sends the next commit to the new owner.
:class:`ScriptChannel` sends one chunk at a time through a registered script: the
fallback for any other client.

Exactness never depends on the overlap: every chunk names the chunk that must
have been applied just before it (``commit.lua``), so once a chunk is refused
every later chunk of the same commit is refused too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

from framework.core.errors import RedisUnavailableError
from framework.core.slots import is_cluster

Arg = str | bytes | int


class ChunkChannel(Protocol):
    """Sends chunks (the script's ARGV) and gives their replies back in order."""

    @property
    def in_flight(self) -> int: ...

    async def send(self, args: Sequence[Arg]) -> None: ...

    async def receive(self) -> int:
        """The new generation the oldest chunk in flight moved to; a refusal is
        raised as redis-py's ``ResponseError``."""
        ...

    async def wait_replicas(self, replicas: int, timeout_ms: int) -> int:
        """WAIT on the connection the chunks went out on (every reply read first):
        how many replicas acknowledged them within ``timeout_ms``."""
        ...

    async def aclose(self) -> None: ...


class Connections(Protocol):
    """Where a channel borrows its one connection (a pool, or a cluster node's)."""

    async def get_connection(self) -> AbstractConnection: ...

    async def release(self, connection: AbstractConnection) -> None: ...


def open_channel(redis: Redis, script: AsyncScript, keys: Sequence[str]) -> ChunkChannel:
    if isinstance(redis, Redis):
        return PipelinedChannel(redis.connection_pool, script, keys)
    if is_cluster(redis):
        return PipelinedChannel(SlotMasterConnections(redis, keys[0]), script, keys)
    return ScriptChannel(script, keys)


class SlotMasterConnections:
    """A connection of the master that a cluster client knows owns ``key``'s slot."""

    def __init__(self, cluster: Any, key: str) -> None:
        self._cluster = cluster
        self._key = key
        self._node: Any = None

    async def get_connection(self) -> AbstractConnection:
        await self._cluster.initialize()  # reads the slots once; nothing after that
        node = self._cluster.get_node_from_key(self._key, replica=False)
        if node is None:
            raise RedisUnavailableError(f"no cluster master serves the slot of {self._key}")
        self._node = node
        connection: AbstractConnection = node.acquire_connection()
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if self._node is not None:
            self._node.release(connection)


class PipelinedChannel:
    """Chunks written back to back on one connection borrowed from ``connections``."""

    def __init__(self, connections: Connections, script: AsyncScript,
                 keys: Sequence[str]) -> None:
        self._pool = connections
        self._script = script
        self._head: tuple[Arg, ...] = ("EVALSHA", script.sha, len(keys), *keys)
        self._connection: AbstractConnection | None = None
        # Replies still to read: the SCRIPT LOAD's (marked False) and each chunk's.
        self._pending: deque[bool] = deque()

    @property
    def in_flight(self) -> int:
        return sum(self._pending)

    async def send(self, args: Sequence[Arg]) -> None:
        connection = await self._connect()
        # No health check: its PING would read the reply of a chunk in flight.
        await connection.send_packed_command(_packed((*self._head, *args)), check_health=False)
        self._pending.append(True)

    async def receive(self) -> int:
        assert self._connection is not None and self._pending
        while True:
            is_chunk = self._pending[0]
            try:
                reply = await self._connection.read_response()
            finally:
                # Read (a refusal included) or not, this reply is no longer awaited
                # here: a failed read disconnects (``aclose``) rather than resync.
                self._pending.popleft()
            if is_chunk:
                return int(reply)

    async def wait_replicas(self, replicas: int, timeout_ms: int) -> int:
        if self._connection is None:
            return 0  # nothing went out on this channel: nothing acknowledged
        assert not self._pending
        await self._connection.send_packed_command(
            _packed(("WAIT", replicas, timeout_ms)), check_health=False
        )
        self._pending.append(False)
        try:
            acked = await self._connection.read_response()
        finally:
            self._pending.popleft()
        return int(acked) if isinstance(acked, int) else 0

    async def _connect(self) -> AbstractConnection:
        if self._connection is None:
            self._connection = await self._pool.get_connection()
            # Loaded ahead of the first chunk on the same connection, its reply read
            # with the chunk's: a restarted Redis has an empty script cache.
            await self._connection.send_packed_command(
                _packed(("SCRIPT", "LOAD", self._script.script)),
                check_health=False,
            )
            self._pending.append(False)
        return self._connection

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._pending:
            # Replies left unread (a refusal, a cancelled poll): the connection is
            # out of step, it must not serve another command.
            self._pending.clear()
            await connection.disconnect(nowait=True)
        await self._pool.release(connection)


def _packed(command: tuple[object, ...]) -> bytes:
    # The stub types the argument as a one-element tuple; hiredis takes any length.
    packed: bytes = hiredis.pack_command(command)  # type: ignore[arg-type]
    return packed


class ScriptChannel:
    """One chunk at a time, each awaited when its reply is asked for."""

    def __init__(self, script: AsyncScript, keys: Sequence[str]) -> None:
        self._script = script
        self._keys = list(keys)
        self._queued: deque[Sequence[Arg]] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._queued)

    async def send(self, args: Sequence[Arg]) -> None:
        self._queued.append(args)

    async def receive(self) -> int:
        args = self._queued.popleft()
        return int(await self._script(keys=self._keys, args=list(args)))

    async def wait_replicas(self, replicas: int, timeout_ms: int) -> int:
        # Each chunk goes out on whichever connection the client gives, and WAIT
        # counts only the writes of its own connection.
        raise RedisUnavailableError(
            "REDIS_MIN_REPLICAS_ACKS needs a client made by framework.core.create_redis "
            "(one server, Sentinel or Cluster)"
        )

    async def aclose(self) -> None:
        self._queued.clear()
