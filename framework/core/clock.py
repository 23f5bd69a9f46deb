"""Time as a dependency, so loops and backoffs can run on a fake clock in tests."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def iso_utc(epoch_s: float) -> str:
    """``2026-11-22T10:30:00.123Z``: the timestamp format of metrics and state."""
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
