"""A supervised child process: its state as the supervisor tracks and publishes it,
the supervisor's metrics, and what it needs to launch children."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from prometheus_client import Counter, Gauge

from framework.polling import ConnectorConfig

# Consecutive failures after which a child is reported as crash looping.
CRASH_LOOP_AFTER = 5


@dataclass(frozen=True)
class SupervisorOptions:
    """How children are launched and restarted."""

    command: Callable[[str], list[str]]  # the command line of a connector's child
    child_env: Mapping[str, str]
    config_path: Path | None  # watched for changes; None: reload on SIGHUP only
    restart_base_s: float = 1.0
    restart_max_s: float = 60.0
    prometheus_dir: Path | None = None  # where the children write their metrics
    output: BinaryIO | None = None  # where children's lines go (default: stdout)


@dataclass
class Child:
    config: ConnectorConfig
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"  # running | backoff | stopping | stopped
    wanted: bool = True
    restarts: int = 0
    failures: int = 0  # consecutive
    last_exit_code: int | None = None
    started_at_s: float = 0.0
    backoff_s: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def crash_looping(self) -> bool:
        return self.failures >= CRASH_LOOP_AFTER

    def as_json(self) -> dict[str, Any]:
        return {
            "state": "crash_loop" if self.crash_looping and self.wanted else self.state,
            "pid": self.process.pid if self.process and self.state == "running" else None,
            "restarts": self.restarts,
            "consecutiveFailures": self.failures,
            "lastExitCode": self.last_exit_code,
            "backoffS": self.backoff_s,
        }


@dataclass(frozen=True)
class SupervisorMetrics:
    restarts: Counter
    up: Gauge

    @classmethod
    def create(cls, registry: Any) -> SupervisorMetrics:
        return cls(
            restarts=Counter("connector_supervisor_restarts", "Child restarts by connector.",
                             ["connector"], registry=registry),
            up=Gauge("connector_supervisor_child_up", "1 while the connector's child runs.",
                     ["connector"], registry=registry),
        )
