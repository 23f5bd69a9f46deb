"""``SlotReads``: new entries from streams that live in several Redis Cluster slots.

One XREADGROUP may name several streams only when they share a slot, so on a cluster
the streams (e.g. the shards ``{signals:0}``, ``{signals:1}``...) are read with one
XREADGROUP per slot group, concurrently, each on its own node. A blocking read of a
quiet shard must not delay the entries of a busy one, yet it cannot be cancelled
either (the entries Redis hands to a cancelled read would sit pending, unseen, until
reclaimed): so a read still blocked when another one returns is kept for the next
turn. Each slot group reads up to its share of ``max_in_flight`` at a time, reserved
from the capacity until its read returns, so the consumer never holds more than
``max_in_flight`` and no read asks for a handful of entries; a group whose last read
found nothing asks for one entry (it reserves one slot while it waits, not a share the
busy groups could use). On one server, or when every stream shares a slot, this is one
XREADGROUP as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from framework.consuming.group import Entry
from framework.core.cancellation import cancel_and_wait
from framework.core.slots import slot_groups

# (streams, count per stream, block ms) -> the entries read
ReadCall = Callable[[list[str], int, int], Coroutine[Any, Any, list[Entry]]]


class SlotReads:
    def __init__(self, streams: Sequence[str], read: ReadCall, *, cluster: bool,
                 max_in_flight: int) -> None:
        self._read = read
        self._groups = [[streams[i] for i in group]
                        for group in slot_groups(list(streams), cluster=cluster)]
        self._share = max(1, max_in_flight // len(self._groups))
        self._outstanding: dict[int, tuple[asyncio.Task[list[Entry]], int]] = {}
        self._next_group = 0
        # Groups whose last read found nothing (all of them: nothing is left to read).
        self._found_nothing: set[int] = set()
        # A read that failed while others returned entries: raised by the next read.
        self._failure: BaseException | None = None

    @property
    def split(self) -> bool:
        """The streams span several slots (several reads per turn)."""
        return len(self._groups) > 1

    @property
    def reserved(self) -> int:
        """Entries that the reads still under way may return."""
        return sum(count for _, count in self._outstanding.values())

    def can_read(self, capacity: int) -> bool:
        """A read is under way, or one may start with ``capacity`` free slots (else
        wait for entries to finish)."""
        if not self.split:
            return capacity > 0
        return bool(self._outstanding) or any(
            capacity >= self._wanted(g) for g in range(len(self._groups)))

    def _wanted(self, group: int) -> int:
        """Entries a read of ``group`` asks for: its share, or one while it is quiet."""
        return 1 if group in self._found_nothing else self._share

    @property
    def drained(self) -> bool:
        """The last read of every slot group found nothing new (burst mode's end)."""
        return len(self._found_nothing) == len(self._groups)

    async def read(self, streams: list[str], *, capacity: int, block_ms: int,
                   wake: asyncio.Event | None = None) -> list[Entry]:
        """At most ``capacity`` new entries (counting the reserved ones). ``streams``
        is the plan for one server (all, or some in turn); a split read plans by slot
        group itself, and returns when one of its reads does, or ``wake`` is set (an
        entry finished: a busy group may read again while quiet ones still block)."""
        if not self.split:
            entries = await self._read(streams, max(1, capacity // len(streams)), block_ms)
            self._found_nothing = set() if entries else {0}
            return entries
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        self._start(capacity - self.reserved, block_ms)
        if not self._outstanding:
            return []
        waiting: list[asyncio.Future[Any]] = [task for task, _ in self._outstanding.values()]
        woken = None if wake is None else asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait([*waiting, *([woken] if woken else [])],
                               timeout=block_ms / 1000, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if woken is not None:
                woken.cancel()
        return self._harvest()

    def _start(self, free: int, block_ms: int) -> None:
        """A read for each idle slot group, in turn while ``free`` lasts."""
        order = [(self._next_group + i) % len(self._groups) for i in range(len(self._groups))]
        for group in order:
            if group in self._outstanding:
                continue
            streams = self._groups[group]
            count = max(1, self._wanted(group) // len(streams))
            if count * len(streams) > free:
                continue
            task = asyncio.create_task(self._read(streams, count, block_ms),
                                       name=f"xreadgroup:{streams[0]}")
            self._outstanding[group] = (task, count * len(streams))
            free -= count * len(streams)
            self._next_group = (group + 1) % len(self._groups)

    def _harvest(self) -> list[Entry]:
        """The entries of the reads that finished. A failure is raised now if no read
        returned entries, else by the next read (the entries are run first: none is
        dropped, and a failing slot is never left unread in silence)."""
        entries: list[Entry] = []
        failure: BaseException | None = None
        for group, (task, _) in list(self._outstanding.items()):
            if not task.done():
                continue
            del self._outstanding[group]
            if task.cancelled():
                continue
            error = task.exception()
            if error is None:
                found = task.result()
                entries += found
                if found:
                    self._found_nothing.discard(group)
                else:
                    self._found_nothing.add(group)
            elif failure is None:
                failure = error
        if failure is not None and not entries:
            raise failure
        self._failure = failure
        return entries

    async def finish(self) -> list[Entry]:
        """Wait for the reads under way (bounded by their BLOCK): what they returned is
        ours now, and must be run or handed over, not left unseen."""
        if not self._outstanding:
            return []
        await asyncio.wait([task for task, _ in self._outstanding.values()])
        try:
            return self._harvest()
        except Exception:  # Redis failed on the way out: the entries stay pending
            return []

    async def cancel(self) -> None:
        """On a forced stop: entries handed to a cancelled read stay pending (reclaimed
        after the visibility timeout)."""
        for task, _ in list(self._outstanding.values()):
            await cancel_and_wait(task)
        self._outstanding.clear()
