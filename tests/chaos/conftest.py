"""Fault tests: Redis frozen, restarted or out of memory, processes killed at
random moments, and hostile peers (slow, huge, wrong or gone). Every test here is
marked ``chaos`` so the group can be run alone (``scripts/test -m chaos``); CI runs
it with the rest of the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.chaos)
