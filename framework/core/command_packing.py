"""Commands packed by hiredis (C) instead of redis-py's asyncio connection (Python).

redis-py's asyncio connection encodes every argument of every command in Python
(an ``isinstance`` chain, a ``repr`` and two joins per argument): a consumer's
batched acknowledgement of 64 entries carries about 450 arguments, and packing
them cost more than the script they call. hiredis packs the same bytes in C.

The output is byte for byte redis-py's: a command name holding a space (``"SCRIPT
LOAD"``) is split into words, str is encoded as UTF-8 (strict), int and float as
their ``repr``. What hiredis refuses (bool, None, bytearray, anything else) is
handed to redis-py's own packer, so its errors (``DataError`` naming the type) and
its few extra types stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

__all__ = ["PACKED_CONNECTIONS", "pack_with_hiredis"]


class _HiredisPacking(AbstractConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        try:
            return [_pack(args)]
        except TypeError:
            return super().pack_command(*args)

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(chunk for command in commands for chunk in self.pack_command(*command))]


class HiredisConnection(_HiredisPacking, Connection):
    """A TCP connection whose commands hiredis packs."""


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection whose commands hiredis packs."""


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix-socket connection whose commands hiredis packs."""


# redis-py's connection class -> the same with hiredis packing.
PACKED_CONNECTIONS: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: HiredisConnection,
    SSLConnection: HiredisSSLConnection,
    UnixDomainSocketConnection: HiredisUnixConnection,
}


def pack_with_hiredis(pool: Any) -> None:
    """Make the connections ``pool`` opens from now on pack with hiredis (a pool of
    another connection class is left as it is)."""
    packed = PACKED_CONNECTIONS.get(pool.connection_class)
    if packed is not None:
        pool.connection_class = packed


def _pack(args: tuple[Any, ...]) -> bytes:
    name = args[0]
    # redis-py sends a command name with spaces ("SCRIPT LOAD", "CLIENT SETNAME") as
    # several arguments.
    if isinstance(name, str) and " " in name:
        args = (*name.encode().split(), *args[1:])
    elif isinstance(name, bytes) and b" " in name:
        args = (*name.split(), *args[1:])
    packed: bytes = hiredis.pack_command(args)
    return packed
