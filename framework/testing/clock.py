"""A clock the test moves by hand; ``sleep`` returns once the clock reaches its end."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start_s: float = 1_800_000_000.0) -> None:
        self._wall_offset = start_s
        self._now = 0.0
        self._wake_times: list[float] = []
        self._changed = asyncio.Condition()

    def time(self) -> float:
        return self._wall_offset + self._now

    def monotonic(self) -> float:
        return self._now

    @property
    def sleeping(self) -> int:
        """Sleepers not yet due (a due one counts as running even before it runs)."""
        return sum(1 for wake_at in self._wake_times if wake_at > self._now)

    async def sleep(self, seconds: float) -> None:
        wake_at = self._now + max(0.0, seconds)
        async with self._changed:
            self._wake_times.append(wake_at)
            self._changed.notify_all()
            try:
                await self._changed.wait_for(lambda: self._now >= wake_at)
            finally:
                self._wake_times.remove(wake_at)

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every sleeper that is due run."""
        async with self._changed:
            self._now += seconds
            self._changed.notify_all()
        await asyncio.sleep(0)

    async def until_sleeping(self, count: int, *, timeout_s: float = 10.0) -> None:
        """Wait (in real time) until ``count`` tasks sleep on this clock: the code
        under test is idle, so advancing now is deterministic."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.sleeping >= count)
