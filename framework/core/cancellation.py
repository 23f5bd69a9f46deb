"""Stopping background tasks for sure: :func:`cancel_and_wait`.

On Python 3.11, ``asyncio.wait_for`` returns its inner result instead of raising
when a cancellation arrives in the loop iteration in which the inner task
completes (fixed in 3.12: gh-86296). redis-py wraps every socket write in it, so a
loop cancelled while it sends a command can swallow the cancellation and carry
on, and a plain ``task.cancel(); await task`` then waits forever (seen: a consumer
that never exited after SIGTERM, its heartbeat beating on).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]

# A swallowed cancellation is retried this often; a task that honours the first
# one ends at once and never waits this long.
_RECANCEL_INTERVAL_S = 0.05


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks and return once all have ended, cancelling again those
    that swallowed it. What they returned or raised is discarded."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_INTERVAL_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved"
