"""``OpsContext``: what the ops HTTP API of a process reads, handed in by the process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core import Clock, KeyScheme, KnownSecrets, Logger
from framework.polling import FleetConfig
from worker.ops.api_support import ApiOptions

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


@dataclass(frozen=True)
class OpsContext:
    redis: Redis
    prometheus: CollectorRegistry
    fleet: Callable[[], FleetConfig]  # the configuration currently applied
    clock: Clock
    process_health: HealthCheck
    # The supervisor's live view of its children; None: read what it wrote to Redis.
    children: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    # The ${VAR} values the process loaded: redacted in every JSON answer.
    secrets: KnownSecrets | None = None
    logger: Logger | None = None  # where a request's unexpected failure is logged
    keys: KeyScheme | None = None  # the fleet's key names (None: the untagged ones)
    api: ApiOptions = field(default_factory=ApiOptions)  # the control API's settings
