"""When a connector polls: slots on a fixed-rate grid, and the backoff after Redis
failures."""

from __future__ import annotations

import math
from dataclasses import dataclass

_REDIS_BACKOFF_MAX_S = 30.0


@dataclass(frozen=True)
class Slot:
    start: float  # monotonic seconds
    skipped: int  # slots missed because the previous poll ran past them


def next_slot(due: float, *, now: float, interval_s: float) -> Slot:
    """The next slot on the grid of ``due`` (where the poll was due, not where it
    started, so lateness never accumulates) that is still ahead of ``now``."""
    slots = max(1, math.ceil((now - due) / interval_s))
    return Slot(start=due + slots * interval_s, skipped=slots - 1)


class RedisBackoff:
    """Consecutive Redis failures and the pause they call for: 0.5 s doubling to 30 s."""

    def __init__(self) -> None:
        self.failures = 0

    @property
    def delay_s(self) -> float:
        return min(_REDIS_BACKOFF_MAX_S, 0.5 * 2.0 ** max(0, self.failures - 1))

    def reset(self) -> None:
        self.failures = 0

    def failed(self) -> float:
        """Count one more failure; the pause it calls for."""
        self.failures += 1
        return self.delay_s
