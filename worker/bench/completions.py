"""Completion stamps of the workers ``bench consume`` runs in this virtualenv
(connector-fleet's and the raw limit loop): ``done_ms:sent_ms`` per event, kept in
memory and written to ``bench:done`` every 10 ms in one RPUSH, so that measuring
costs each system a few round trips a second, not one per event (the peers'
scripts do the same, ``scripts/bench/_baseline.py``)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from worker.bench.load import DONE_KEY

FLUSH_S = 0.01


class Completions:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[str] = []

    def stamp(self, sent_ms: float) -> None:
        self._pending.append(f"{time.time() * 1000:.3f}:{sent_ms}")

    async def write_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.write()

    async def write(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            await self._redis.rpush(DONE_KEY, *lines)
