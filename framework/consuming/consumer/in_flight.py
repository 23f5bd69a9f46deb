"""``InFlight``: the entries one consumer holds, their order per key, the entries
waiting out a retry's backoff (still ours, holding no slot), and the signals of its
run (something settled, stop requested, stop forced)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from dataclasses import dataclass

from framework.consuming.delivery import Delivery


@dataclass
class Work:
    delivery: Delivery
    key: str | None
    task: asyncio.Task[None] | None = None
    # Its XACK or dead letter is on its way: no heartbeat may call it lost.
    settling: bool = False


class InFlight:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._work: dict[tuple[str, str], Work] = {}
        self._waiting: dict[str, deque[Work]] = {}  # key -> entries behind the running one
        self._abandoned: list[Delivery] = []  # cancelled before they settled
        # Failed attempts to redeliver at a monotonic time: pending and ours (heartbeat),
        # not counted against max_in_flight.
        self._delayed: dict[tuple[str, str], tuple[float, Delivery]] = {}
        self.changed = asyncio.Event()  # an entry finished, or the run must end
        self.stopping = False
        self.forced = False

    def __len__(self) -> int:
        return len(self._work)

    def capacity(self) -> int:
        return self.max_in_flight - len(self._work)

    def hold(self, work: Work) -> bool:
        """Hold ``work``; True if it may start now, False if it waits behind an entry
        of its key (entries of one key run one at a time, in stream order)."""
        d = work.delivery
        self._work[(d.stream, d.entry_id)] = work
        if work.key is None:
            return True
        if work.key in self._waiting:
            _enqueue_in_stream_order(self._waiting[work.key], work)
            return False
        self._waiting[work.key] = deque()
        return True

    def release(self, work: Work) -> Work | None:
        """Let ``work`` go; the next entry of its key, to start now (none once forced)."""
        d = work.delivery
        self._work.pop((d.stream, d.entry_id), None)
        following = None
        if work.key is not None:
            queue = self._waiting.get(work.key)
            if queue and not self.forced:
                following = queue.popleft()
            elif not queue:
                self._waiting.pop(work.key, None)
        self.changed.set()
        return following

    def held_ids(self, stream: str) -> set[str]:
        return {entry_id for s, entry_id in [*self._work, *self._delayed] if s == stream}

    def delay(self, delivery: Delivery, due_s: float) -> None:
        """Keep ``delivery`` (pending, ours) for a redelivery at ``due_s``, holding no slot."""
        self._delayed[(delivery.stream, delivery.entry_id)] = (due_s, delivery)
        self.changed.set()

    def next_due_s(self) -> float | None:
        return min((due_s for due_s, _ in self._delayed.values()), default=None)

    def take_due(self, now_s: float, limit: int) -> list[Delivery]:
        """Up to ``limit`` delayed entries whose time has come, oldest due first."""
        due = sorted((item for item in self._delayed.items() if item[1][0] <= now_s),
                     key=lambda item: item[1][0])[:limit]
        for address, _ in due:
            del self._delayed[address]
        return [delivery for _, (_, delivery) in due]

    def unsettled_by_stream(self) -> dict[str, list[str]]:
        """The entries held and not being settled, and the delayed ones, by stream
        (what a heartbeat keeps ours)."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for (stream, entry_id), work in list(self._work.items()):
            if not work.settling:
                by_stream[stream].append(entry_id)
        for stream, entry_id in self._delayed:
            by_stream[stream].append(entry_id)
        return by_stream

    def is_unsettled(self, stream: str, entry_id: str) -> bool:
        current = self._work.get((stream, entry_id))
        return current is not None and not current.settling

    def leftovers_by_stream(self) -> dict[str, list[str]]:
        """The entries taken and not settled (cancelled or still held), by stream."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        delayed = [delivery for _, delivery in self._delayed.values()]
        for delivery in self._abandoned + delayed + [w.delivery for w in self._work.values()]:
            by_stream[delivery.stream].append(delivery.entry_id)
        return by_stream

    def tasks(self) -> list[asyncio.Task[None]]:
        return [w.task for w in self._work.values() if w.task is not None]

    def mark_abandoned(self, delivery: Delivery) -> None:
        """Its task was cancelled before it settled: hand it back when the run ends."""
        self._abandoned.append(delivery)

    def request_stop(self) -> None:
        self.stopping = True
        self.changed.set()

    def abandon(self) -> None:
        """Cancel the work in flight; nothing waiting behind it starts."""
        self.forced = True
        self.changed.set()
        for task in self.tasks():
            task.cancel()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake early on stop."""
        self.changed.clear()
        if self.stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout=seconds)


def _enqueue_in_stream_order(queue: deque[Work], work: Work) -> None:
    """Append; a reclaimed entry goes before the newer entries of its key already here."""
    position = len(queue)
    while position and _id_order(queue[position - 1]) > _id_order(work):
        position -= 1
    queue.insert(position, work)


def _id_order(work: Work) -> tuple[int, int]:
    milliseconds, _, sequence = work.delivery.entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)
