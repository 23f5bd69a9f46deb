"""What operators see of the fleet: per connector its config, lease, metrics,
supervisor state and health, read from Redis. Used by the ops HTTP API and by
``connector-fleet status``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from framework.core import SUPERVISOR_CHILDREN_KEY, KeyScheme
from framework.polling import ConnectorConfig, FleetConfig, get_metrics, read_lease
from worker.ops.controls import read_controls

# Unhealthy when the last successful poll is older than this many intervals.
HEALTHY_INTERVALS = 3


@dataclass(frozen=True)
class ConnectorStatus:
    config: ConnectorConfig
    lease_holder: str | None
    lease_ttl_ms: int | None
    metrics: Mapping[str, Any] | None
    child: Mapping[str, Any] | None
    healthy: bool
    reason: str | None
    # The operator controls (worker.ops.controls): paused flag and last poll error.
    paused: Mapping[str, Any] | None = None
    last_error: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        metrics = dict(self.metrics or {"connectorName": self.config.name})
        return {
            "name": self.config.name,
            "type": self.config.type,
            "enabled": self.config.enabled,
            **metrics,
            "leaseHolder": self.lease_holder,
            "leaseTtlMs": self.lease_ttl_ms,
            "supervisor": dict(self.child) if self.child else None,
            "healthy": self.healthy,
            "reason": self.reason,
            "paused": dict(self.paused) if self.paused else None,
            "lastError": dict(self.last_error) if self.last_error else None,
        }


async def read_children(redis: Redis) -> dict[str, dict[str, Any]]:
    raw = cast(dict[str, str], await redis.hgetall(SUPERVISOR_CHILDREN_KEY))
    return {name: orjson.loads(value) for name, value in raw.items()}


async def connector_status(
    redis: Redis, config: ConnectorConfig, *, now_s: float,
    children: Mapping[str, Mapping[str, Any]] | None = None, scheme: KeyScheme | None = None,
) -> ConnectorStatus:
    """``scheme``: the fleet's key names (default the untagged ones)."""
    keys = config.keys(scheme or KeyScheme())
    lease = await read_lease(redis, config.name, key=keys.lease)
    metrics = await get_metrics(redis, config.name, key=keys.metrics)
    child = (children or {}).get(config.name)
    controls = await read_controls(redis, config.name)
    # A paused connector is not polling on purpose: that is not a failure.
    reason = None if controls["paused"] else _unhealthy_reason(
        config, lease.holder, metrics, child, now_s)
    return ConnectorStatus(
        config=config, lease_holder=lease.holder, lease_ttl_ms=lease.ttl_ms, metrics=metrics,
        child=child, healthy=reason is None, reason=reason, paused=controls["paused"],
        last_error=controls["lastError"],
    )


async def fleet_status(
    redis: Redis, fleet: FleetConfig, *, now_s: float,
    children: Mapping[str, Mapping[str, Any]] | None = None, scheme: KeyScheme | None = None,
) -> list[ConnectorStatus]:
    """``children``: the supervisor's own view; by default what it last wrote to Redis."""
    if children is None:
        children = await read_children(redis)
    return [
        await connector_status(redis, config, now_s=now_s, children=children, scheme=scheme)
        for config in fleet.connectors.values()
    ]


def _unhealthy_reason(
    config: ConnectorConfig, holder: str | None, metrics: Mapping[str, Any] | None,
    child: Mapping[str, Any] | None, now_s: float,
) -> str | None:
    if not config.enabled:
        return None
    if child and child.get("state") == "crash_loop":
        restarts, code = child.get("restarts", 0), child.get("lastExitCode")
        return f"crash looping ({restarts} restarts, last exit code {code})"
    if holder is None:
        return "lease not held by any instance"
    horizon_s = (HEALTHY_INTERVALS * config.poll_interval_ms + config.request_timeout_ms) / 1000
    last = (metrics or {}).get("lastSuccessTime")
    if not last:
        return "no successful poll yet"
    age_s = now_s - datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()
    if age_s > horizon_s:
        return f"no successful poll within {HEALTHY_INTERVALS} intervals (last {age_s:.0f} s ago)"
    return _degraded_reason(metrics or {})


def _degraded_reason(metrics: Mapping[str, Any]) -> str | None:
    """Polls that succeed while every item fails (the transform rejects them all) are
    not health: nothing reaches the stream."""
    since = metrics.get("degradedSince")
    if not since:
        return None
    failed = metrics.get("lastPollItemsFailed", 0)
    return f"every item failed in the last poll ({failed} failed, none published) since {since}"
