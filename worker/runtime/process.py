"""What a process does before its service runs: settings and the event loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from framework.core import ConfigError, Settings, read_settings


def load_settings(*, metrics_port: int | None, config_path: str | None) -> Settings | None:
    """The environment's settings with the command line's overrides; None (said on
    stderr) when the environment is invalid."""
    try:
        settings = read_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    updates: dict[str, Any] = {}
    if config_path is not None:
        updates["connectors_config_path"] = Path(config_path)
    if metrics_port is not None:
        updates["metrics_port"] = metrics_port
    return settings.model_copy(update=updates)


def run_event_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result
