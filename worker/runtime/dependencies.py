"""``Runtime``: what every long-running process hands its service, built once at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core import Clock, KeyScheme, KnownSecrets, Logger
from framework.polling import ConnectorRegistry, FleetConfig, ReplicaAcks


@dataclass(frozen=True)
class Runtime:
    """The shared dependencies of a service: one Redis client, the connector types,
    how to read the fleet configuration, time, logs and metrics."""

    redis: Redis
    redis_url: str  # where ``redis`` points (an embedded server's, if one was started)
    registry: ConnectorRegistry
    load_config: Callable[[], FleetConfig]
    clock: Clock
    logger: Logger
    prometheus: CollectorRegistry  # what the ops API serves at /metrics
    drain_timeout_s: float
    # The ${VAR} values loaded so far; the process's log renderer redacts them.
    secrets: KnownSecrets = field(default_factory=KnownSecrets)
    # The Redis key names: hash tags on for a Cluster (FLEET_REDIS_HASH_TAGS).
    keys: KeyScheme = field(default_factory=KeyScheme)
    # How many replicas must acknowledge each fenced commit (REDIS_MIN_REPLICAS_ACKS).
    replica_acks: ReplicaAcks = field(default_factory=ReplicaAcks)
