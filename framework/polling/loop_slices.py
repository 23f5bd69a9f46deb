"""Long work in slices: :class:`LoopSlices` yields to the event loop once a slice's
time budget is spent, so that lease renewals and the other connectors of the
process wait at most about :data:`SLICE_BUDGET_S`, however big the work and
however loaded the machine (a count of items per slice would be right on one
machine only).

It reads ``time.perf_counter`` itself: this measures the CPU time just spent, it
decides nothing that a test's clock would have to control.
"""

from __future__ import annotations

import asyncio
import time

SLICE_BUDGET_S = 0.010


class LoopSlices:
    def __init__(self, budget_s: float = SLICE_BUDGET_S) -> None:
        self._budget_s = budget_s
        self._started = time.perf_counter()

    def due(self) -> bool:
        """This slice has used its budget (for loops that avoid a coroutine per item:
        ``if slices.due(): await slices.pause_if_due()``)."""
        return time.perf_counter() - self._started >= self._budget_s

    async def pause_if_due(self) -> None:
        """Yield to the loop if this slice has used its budget."""
        if time.perf_counter() - self._started >= self._budget_s:
            await asyncio.sleep(0)  # let renewals and other connectors run
            self._started = time.perf_counter()
