"""``Deadlines``: timeouts for many concurrent calls, on few timers.

``asyncio.timeout()`` arms a loop timer for each call and cancels it after; a
consumer making thousands of short calls a second spends more on that than on a
no-op call (``bench consume``: about 8 µs of the 60 an entry costs). Here the
calls whose deadlines fall in the same slot (``resolution_s``, 50 ms by
default) share one timer: a call times out between its timeout and one
resolution later, and a call that finishes first costs a set insertion and
removal. The semantics are ``asyncio.timeout()``'s: the task running the block
is cancelled at the deadline and the block raises :class:`TimeoutError`; a
cancellation from elsewhere stays a ``CancelledError``::

    deadlines = Deadlines()
    with deadlines.after(10.0):
        await call()

Time the block spends waiting on our own infrastructure (a Redis check before the
target is touched) is not the target's: ``with outside_deadline(): ...`` inside the
block stops the clock for that wait, which then has only its own client's timeouts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import TracebackType

__all__ = ["Deadlines", "outside_deadline"]

DEFAULT_RESOLUTION_S = 0.05


class Deadlines:
    def __init__(self, resolution_s: float = DEFAULT_RESOLUTION_S) -> None:
        if resolution_s <= 0:
            raise ValueError(f"resolution_s must be positive, got {resolution_s}")
        self._resolution_s = resolution_s
        # Keyed by loop too: a timer armed on a loop that closed never fires, and a call
        # on another loop must not join its slot (tests run one loop per test).
        self._slots: dict[tuple[asyncio.AbstractEventLoop, int], set[_Deadline]] = {}

    def after(self, timeout_s: float) -> _Deadline:
        """A context manager: the block raises TimeoutError after ``timeout_s``."""
        return _Deadline(self, timeout_s)

    def _arm(self, deadline: _Deadline, loop: asyncio.AbstractEventLoop,
             at_s: float) -> tuple[asyncio.AbstractEventLoop, int]:
        slot = (loop, math.ceil(at_s / self._resolution_s))
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            loop.call_at(slot[1] * self._resolution_s, self._expire, slot)
        members.add(deadline)
        return slot

    def _disarm(self, deadline: _Deadline, slot: tuple[asyncio.AbstractEventLoop, int]) -> None:
        members = self._slots.get(slot)
        if members is not None:
            members.discard(deadline)

    def _expire(self, slot: tuple[asyncio.AbstractEventLoop, int]) -> None:
        for deadline in self._slots.pop(slot, ()):
            deadline.expire()


class _Deadline:
    __slots__ = ("_owner", "_timeout_s", "_task", "_slot", "_at_s", "_left_s", "_paused", "_token",
                 "expired")

    def __init__(self, owner: Deadlines, timeout_s: float) -> None:
        self._owner = owner
        self._timeout_s = timeout_s
        self._task: asyncio.Task[object] | None = None
        self._slot: tuple[asyncio.AbstractEventLoop, int] | None = None
        self._at_s = 0.0
        self._left_s = 0.0
        self._paused = 0
        self._token: Token[_Deadline | None] | None = None
        self.expired = False

    def __enter__(self) -> _Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.after() must be used inside a task")
        self._task = task
        loop = task.get_loop()
        self._at_s = loop.time() + self._timeout_s
        self._slot = self._owner._arm(self, loop, self._at_s)
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._token is not None:
            _current.reset(self._token)
        if self._slot is not None:
            self._owner._disarm(self, self._slot)
        if not self.expired or self._task is None:
            return
        # Ours (not another canceller's) when no other cancellation is pending.
        if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
            raise TimeoutError(f"timed out after {self._timeout_s:g} s") from exc

    def pause(self) -> None:
        """Stop the clock (nested pauses count): the time left is kept for resume()."""
        self._paused += 1
        if self._paused == 1 and self._slot is not None and self._task is not None:
            self._owner._disarm(self, self._slot)
            self._slot = None
            self._left_s = self._at_s - self._task.get_loop().time()

    def resume(self) -> None:
        self._paused -= 1
        if self._paused == 0 and self._slot is None and self._task is not None:
            loop = self._task.get_loop()
            self._at_s = loop.time() + self._left_s
            self._slot = self._owner._arm(self, loop, self._at_s)

    def expire(self) -> None:
        if self._task is not None and not self._task.done():
            self.expired = True
            self._task.cancel()


_current: ContextVar[_Deadline | None] = ContextVar("deadline", default=None)


@contextmanager
def outside_deadline() -> Iterator[None]:
    """Within ``Deadlines.after()``: the time spent in this block is not counted (a
    wait on our own infrastructure, not on the target the deadline bounds). Outside
    any deadline: nothing."""
    deadline = _current.get()
    if deadline is None or deadline.expired:
        yield
        return
    deadline.pause()
    try:
        yield
    finally:
        deadline.resume()
