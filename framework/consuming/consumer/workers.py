"""``Workers``: long-lived tasks that run the entries a consumer holds, in place of a
task per entry.

A task per entry cost more than a quick entry's whole handling (creating it,
scheduling its first step, its completion). Here the entries ready to run wait in
a queue and a worker takes them one after another: a batch of entries whose
handlers never wait runs in one step of one task. Concurrency is kept: when a
worker takes an entry while others are still queued, one more worker is woken
(or started, up to ``size``) first, so that if this entry waits on I/O the next
one starts at once; only one wake-up is pending at a time, so a batch that needs
no waiting costs one wake-up, not one per entry.

A worker runs ``run(work)``, which handles its own errors (one failing entry never
stops the others) and re-raises a cancellation, which ends the worker. A forced
stop (``stopped()``) also ends it between two entries: on Python 3.11 a
cancellation can be swallowed inside redis-py (``framework.core.cancellation``), so
the next entry is never started on the strength of it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from framework.consuming.consumer.in_flight import Work
from framework.core.cancellation import cancel_and_wait


class Workers:
    def __init__(self, run: Callable[[Work], Awaitable[None]], *, size: int,
                 stopped: Callable[[], bool]) -> None:
        self._run = run
        self._size = size
        self._stopped = stopped
        self._ready: deque[Work] = deque()
        self._idle: deque[asyncio.Future[None]] = deque()  # each idle worker's wake-up
        self._tasks: set[asyncio.Task[None]] = set()
        self._waking = False  # a worker is woken or started and has not taken an entry yet

    def submit(self, work: Work) -> None:
        """Run ``work`` as soon as a worker is free."""
        self._ready.append(work)
        self._wake_one()

    def _wake_one(self) -> None:
        if self._waking:
            return  # the worker on its way takes the next entry (and wakes another)
        while self._idle:
            wake_up = self._idle.popleft()
            if not wake_up.done():  # done: its worker was cancelled while idle
                wake_up.set_result(None)
                self._waking = True
                return
        if len(self._tasks) < self._size:
            task = asyncio.create_task(self._work(), name="consumer-worker")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._waking = True

    async def _work(self) -> None:
        task = asyncio.current_task()
        woken = True  # started by _wake_one
        wake_up: asyncio.Future[None] | None = None
        try:
            while not self._stopped():
                if woken:
                    # On its way no more: the next submit may wake another.
                    woken = self._waking = False
                if not self._ready:
                    wake_up = asyncio.get_running_loop().create_future()
                    self._idle.append(wake_up)
                    await wake_up
                    wake_up, woken = None, True
                    continue
                work = self._ready.popleft()
                if self._ready:
                    self._wake_one()
                work.task = task
                try:
                    await self._run(work)
                finally:
                    work.task = None
        finally:
            if woken or (wake_up is not None and wake_up.done() and not wake_up.cancelled()):
                self._waking = False  # woken, and gone before looking at the queue

    async def close(self) -> None:
        """Stop every worker (the entries still queued stay held by the consumer)."""
        await cancel_and_wait(*self._tasks)
