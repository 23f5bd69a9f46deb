"""A TCP peer on a free loopback port that accepts connections and never says a word:
the hostile peer a client's total deadline must end (no greeting, no handshake)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class SilentPeer:
    port: int
    # Kept open until the peer closes: a closed socket would be a refusal, not silence.
    accepted: list[asyncio.StreamWriter] = field(default_factory=list)


@asynccontextmanager
async def silent_peer() -> AsyncIterator[SilentPeer]:
    """``async with silent_peer() as peer:`` connect to ``peer.port``; ``peer.accepted``
    holds the connections it took. Every socket is closed on the way out."""
    peer = SilentPeer(port=0)

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.accepted.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        for writer in peer.accepted:
            writer.close()
        server.close()
        await server.wait_closed()
