"""Messages a broker's client has handed over, until the push connector takes them.

Shared by the MQTT and AMQP sources: ``receive`` waits for the first message (at most
its ``wait_s``), then lets the rest of a burst arrive for a moment, so that a burst is
appended in one fenced commit rather than one commit per message."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """``add`` may be called from a client's own thread (a deque's append is
    thread-safe); ``wake``, ``take`` and ``clear`` run on the event loop."""

    def __init__(self, linger_s: float) -> None:
        self._items: deque[T] = deque()
        self._arrived = asyncio.Event()
        self._linger_s = linger_s

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        self._items.append(item)

    def wake(self) -> None:
        """Tell a waiting ``take`` that something arrived."""
        self._arrived.set()

    def clear(self) -> None:
        self._items.clear()

    def put_back(self, items: list[T]) -> None:
        """Items taken but not used now: first again, in their order (event loop only)."""
        self._items.extendleft(reversed(items))

    async def take(self, max_items: int, wait_s: float,
                   keep: Callable[[T], bool] | None = None) -> list[T]:
        """At most ``max_items``, waiting at most ``wait_s`` for the first one (then
        ``linger_s`` for the rest of a burst); ``keep`` drops those it refuses."""
        if not self._items:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        if len(self._items) < max_items:
            await asyncio.sleep(min(self._linger_s, wait_s))
        taken: list[T] = []
        while self._items and len(taken) < max_items:
            item = self._items.popleft()
            if keep is None or keep(item):
                taken.append(item)
        return taken
