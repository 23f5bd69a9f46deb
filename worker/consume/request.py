"""What ``connector-fleet consume`` was asked to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ConsumeRequest:
    """What the command line asked for. ``streams`` empty: the streams of the rules;
    ``options``: the other :class:`~framework.consuming.ConsumerOptions` fields
    (checked at start)."""

    streams: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    handler: str | None = None
    rules_path: Path | None = None
