"""Whether a connector worker is well, for its process's ``/health``: a standby or a
paused one is; an active one is when a poll succeeded within ``HEALTHY_INTERVALS``
intervals (plus one request's timeout) and the last poll did not fail every item."""

from __future__ import annotations

from typing import Any, Protocol

from framework.polling import ConnectorConfig, Lease

# Unhealthy when no poll succeeded within this many intervals.
HEALTHY_INTERVALS = 3


class WorkerView(Protocol):
    """What of a :class:`~worker.connector.worker.ConnectorWorker` health reads."""

    name: str
    lease: Lease
    last_success_s: float | None
    started_at_s: float
    degraded: bool

    @property
    def config(self) -> ConnectorConfig: ...


def connector_health(worker: WorkerView, *, paused: bool, now_s: float
                     ) -> tuple[bool, dict[str, Any]]:
    """(healthy, details)."""
    details: dict[str, Any] = {
        "connector": worker.name,
        "role": "active" if worker.lease.held else "standby",
        "lastSuccessTime": worker.last_success_s,
    }
    if not worker.lease.held or paused:
        return True, {**details, "paused": paused}
    config = worker.config
    horizon_s = HEALTHY_INTERVALS * config.poll_interval_ms / 1000
    reference = worker.last_success_s or worker.started_at_s
    healthy = now_s - reference <= horizon_s + config.request_timeout_ms / 1000
    if not healthy:
        details["reason"] = f"no successful poll within {HEALTHY_INTERVALS} intervals"
    elif worker.degraded:
        healthy = False
        details["reason"] = "every item failed in the last poll (none published)"
    return healthy, details
