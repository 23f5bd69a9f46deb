"""fs-watch's case for the provider contract: its config errors only (it reads a
directory, not an HTTP source; tests/providers/test_fs_watch.py covers its events)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from framework.testing import ProviderCase

WHY = "reads a directory, not an HTTP source: tests/providers/test_fs_watch.py covers it"


class FileEvent(BaseModel):
    source: str
    value: dict[str, Any]
    timestamp: str
    nodeId: str
    metadata: dict[str, Any]


CASES = [
    ProviderCase(
        type_name="fs-watch", signal_model=FileEvent,
        provider_config=lambda _url: {"path": "/srv/inbox", "globs": ["*.csv"]},
        required_fields=["path"],
        unsupported={name: WHY for name in ("initial", "changed", "paged", "not_modified")},
    ),
]
