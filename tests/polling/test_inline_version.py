"""The diff inlines the default detector's steps (framework.polling.versions): the
versions it stores must be exactly content_version's, or every item would be
republished once after an upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from framework.core import get_logger
from framework.polling import content_version
from framework.polling.diff import Differ
from framework.polling.state import Change

ITEMS: list[dict[str, Any]] = [
    {"id": "a", "b": 1, "a": [1, 2.5, None]},
    {"id": "ü-ß", "nested": {"z": True, "a": "é\u2028"}, "n": -3},
    {"id": "c", "big": 2**53, "text": "x" * 500},
]


class _Collect:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def add(self, change: Change) -> bool:
        self.changes.append(change)
        return False

    async def send_full(self) -> None:
        raise AssertionError("no chunk is full here")


def _diff(known: dict[str, str]) -> _Collect:
    session = _Collect()
    differ = Differ[dict[str, Any], dict[str, Any]](
        item_id=lambda raw: raw["id"], version=content_version,
        transformer=lambda raw: raw, log=get_logger(connector="inline-version"))
    asyncio.run(differ.detect_changes(list(ITEMS), known, session))  # type: ignore[arg-type]
    return session


def test_inlined_default_version_is_content_version() -> None:
    session = _diff({})
    assert [(c[0], c[1]) for c in session.changes] == [
        (raw["id"], content_version(raw)) for raw in ITEMS
    ]


def test_items_stored_with_content_version_are_unchanged() -> None:
    known = {raw["id"]: content_version(raw) for raw in ITEMS}
    known["c"] = "stale"
    assert [c[0] for c in _diff(known).changes] == ["c"]
