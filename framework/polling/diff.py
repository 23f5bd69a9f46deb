"""Change detection: which items of a fetch are new or changed, made into the
changes a commit publishes.

A poll of 100,000 items diffs every one of them, most unchanged, so the per-item
work is what a poll costs: :class:`Differ` keeps it to the source's id and version
functions, a set and a dict lookup. Each bad item (an id or a version or a signal
that raises, an empty or a duplicate id) is counted and logged with its position
and never stops the others.

It takes the items a batch at a time (:data:`BATCH_ITEMS`). Between batches it
reads the clock and yields to the event loop once a slice's time is spent
(:class:`LoopSlices`), and it releases the items of a list it was handed as it
goes (see :class:`~framework.polling.poller.FetchResult`): a big poll's items are
freed a batch at a time, never in one go at its end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from framework.core.logs import Logger
from framework.polling.commit_session import CommitSession
from framework.polling.loop_slices import LoopSlices
from framework.polling.state import Change
from framework.polling.versions import (
    SORTED_KEYS,
    canonical_json,
    new_version_hasher,
    versioned_with_content,
)

TRaw = TypeVar("TRaw")
TSignal = TypeVar("TSignal")

# Items per batch: a fraction of a millisecond of work, well within a slice's budget,
# and enough that the per-batch steps cost little per item.
BATCH_ITEMS = 64
_RELEASED: list[None] = [None] * BATCH_ITEMS


def encode_signal(signal: Any) -> bytes:
    if isinstance(signal, BaseModel):
        return orjson.dumps(signal.model_dump(mode="json"))
    return orjson.dumps(signal)


@dataclass(slots=True)
class DiffCounts:
    seen: set[str] = field(default_factory=set)
    published: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Differ(Generic[TRaw, TSignal]):
    """How a source's items are identified, versioned and made signals."""

    item_id: Callable[[TRaw], str]
    version: Callable[[TRaw], str]
    transformer: Callable[[TRaw], TSignal]
    log: Logger

    async def detect_changes(
        self, items: Sequence[TRaw], known: Mapping[str, str], session: CommitSession
    ) -> DiffCounts:
        """Hands each new or changed item to ``session``. ``known`` may gain the
        ids of this fetch as its chunks are applied: each id is looked up before
        its own change is sent."""
        counts, slices = DiffCounts(), LoopSlices()
        handed_over: list[Any] | None = items if isinstance(items, list) else None
        for start in range(0, len(items), BATCH_ITEMS):
            if slices.due():
                await slices.pause_if_due()
            batch = items[start : start + BATCH_ITEMS]
            if handed_over is not None:
                handed_over[start : start + len(batch)] = _RELEASED[: len(batch)]
            for change in self._changes_in(batch, start, known, counts):
                if session.add(change):
                    await session.send_full()
        return counts

    def _changes_in(
        self, batch: Sequence[TRaw], start: int, known: Mapping[str, str], counts: DiffCounts
    ) -> list[Change]:
        # Each item's id, version and signal are asked for in that order, one item
        # after the other: a source may keep what the first two computed for the
        # third (HTTP_JSON does, so that each item is hashed once).
        changes = []
        seen, known_version = counts.seen, known.get
        id_of, version_of = self.item_id, self.version
        # The default detector's steps, inlined: a Python call less per item, most
        # of them unchanged (see framework.polling.versions).
        inline = versioned_with_content(version_of)
        new_hasher, dumps, sorted_keys = new_version_hasher, canonical_json, SORTED_KEYS
        skipped = 0
        for index, raw in enumerate(batch):
            item_id: str | None = None
            try:
                item_id = id_of(raw)
                if not item_id:
                    raise ValueError("item has no id")
                if item_id in seen:
                    raise ValueError("duplicate item id in one fetch; the first copy is kept")
                seen.add(item_id)
                if inline:
                    hasher = new_hasher()
                    hasher.update(dumps(raw, option=sorted_keys))
                    version = hasher.hexdigest()
                else:
                    version = version_of(raw)
            except Exception as exc:
                self._item_failed(counts, item_id, start + index, exc)
                continue
            if known_version(item_id) == version:
                skipped += 1
                continue
            change = self._change(raw, item_id, version, start + index, counts)
            if change is not None:
                changes.append(change)
        counts.skipped += skipped
        return changes

    def _change(
        self, raw: TRaw, item_id: str, version: str, position: int, counts: DiffCounts
    ) -> Change | None:
        try:
            payload = encode_signal(self.transformer(raw))
        except Exception as exc:
            self._item_failed(counts, item_id, position, exc)
            return None
        counts.published += 1
        return Change(item_id, version, payload)

    def _item_failed(
        self, counts: DiffCounts, item_id: str | None, position: int, exc: Exception
    ) -> None:
        counts.failed += 1
        # An id is whatever the source made of its data: one that is not valid text
        # (a file name in another encoding) must not break the line that reports it.
        shown = item_id.encode("utf-8", "backslashreplace").decode() if item_id else item_id
        self.log.warning(
            "item_failed", item_id=shown, position=position, error=f"{type(exc).__name__}: {exc}"
        )
