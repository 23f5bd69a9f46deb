"""The pause before a broker source connects again after failing to.

A push connector's windows follow each other at once, so a broker that refuses
the login, or is down, would otherwise be asked again in a tight loop. The pause
doubles from ``first_s`` up to ``max_s`` with each failure in a row and is gone
after a success; it stays well below any poll deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class ReconnectBackoff:
    first_s: float = 0.5
    max_s: float = 10.0
    failures: int = 0

    @property
    def delay_s(self) -> float:
        if not self.failures:
            return 0.0
        return float(min(self.first_s * 2 ** (self.failures - 1), self.max_s))

    async def pause(self) -> None:
        if self.failures:
            await asyncio.sleep(self.delay_s)

    def failed(self) -> None:
        self.failures += 1

    def succeeded(self) -> None:
        self.failures = 0
