"""Connector metrics: the Redis hash ``metrics:connector:{name}`` (read
by ``redis-cli HGETALL`` and by the fleet's ops API) and Prometheus series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis

from framework.core.clock import iso_utc
from framework.core.keys import metrics_key
from framework.core.scripts import lua
from framework.polling.poller import PollSummary

_INT_FIELDS = (
    "totalPolls",
    "successfulPolls",
    "failedPolls",
    "itemsFetched",
    "itemsPublished",
    "itemsFailed",
    "lastPollItemsFailed",
    "averageLatencyMs",
)


class MetricsRecorder:
    """Writes one connector's poll results to Redis."""

    def __init__(self, redis: Redis, name: str, *, key: str | None = None) -> None:
        """``key``: the hash's key under the fleet's KeyScheme (default the documented one)."""
        self._name = name
        self._key = key or metrics_key(name)
        self._record = redis.register_script(lua("framework.polling", "record_poll"))

    async def record_poll(
        self, *, at_s: float, latency_ms: float, summary: PollSummary | None
    ) -> None:
        """``summary`` is None for a failed poll."""
        fetched = summary.fetched if summary else 0
        published = summary.published if summary else 0
        failed = summary.failed if summary else 0
        await self._record(
            keys=[self._key],
            args=[self._name, iso_utc(at_s), "1" if summary else "0", fetched, published,
                  round(latency_ms, 3), failed, _degraded_flag(summary)],
        )


def _degraded_flag(summary: PollSummary | None) -> str:
    """What this poll says about "every item fails": "1", "0", or "" (it cannot tell:
    the poll failed, or the source had nothing new)."""
    if summary is None or summary.not_modified:
        return ""
    return "1" if summary.all_items_failed else "0"


async def get_metrics(
    redis: Redis, name: str, *, key: str | None = None
) -> dict[str, Any] | None:
    """The connector's metrics hash (at ``key``, default the untagged one) as typed
    values, or None if it never polled."""
    fields = await redis.hgetall(key or metrics_key(name))
    if not fields:
        return None
    metrics: dict[str, Any] = {
        "connectorName": fields.get("connectorName", name),
        "lastPollTime": fields.get("lastPollTime"),
        "lastSuccessTime": fields.get("lastSuccessTime"),
        "degradedSince": fields.get("degradedSince"),
    }
    for field in _INT_FIELDS:
        metrics[field] = int(float(fields.get(field, 0)))
    return metrics


async def is_healthy(
    redis: Redis, name: str, max_age_s: float, *, now_s: float, key: str | None = None
) -> bool:
    """True if the connector's last successful poll is at most ``max_age_s`` old."""
    metrics = await get_metrics(redis, name, key=key)
    if not metrics or not metrics["lastSuccessTime"]:
        return False
    last = datetime.fromisoformat(metrics["lastSuccessTime"].replace("Z", "+00:00"))
    return now_s - last.timestamp() <= max_age_s


@dataclass(frozen=True)
class PrometheusMetrics:
    """The process's Prometheus series, on a registry it is given."""

    registry: CollectorRegistry
    polls: Counter
    items: Counter
    poll_duration: Histogram
    start_delay: Histogram
    lease_held: Gauge
    redis_errors: Counter
    last_success: Gauge
    degraded: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PrometheusMetrics:
        return cls(
            registry=registry,
            polls=Counter(
                "connector_polls", "Polls by outcome (success, failure, not_modified).",
                ["connector", "outcome"], registry=registry,
            ),
            items=Counter(
                "connector_items", "Items by outcome (fetched, published, unchanged, "
                "failed, removed).", ["connector", "outcome"], registry=registry,
            ),
            poll_duration=Histogram(
                "connector_poll_duration_seconds", "Duration of one poll.", ["connector"],
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                registry=registry,
            ),
            start_delay=Histogram(
                "connector_poll_start_delay_seconds",
                "How late a poll started compared with its slot on the schedule.",
                ["connector"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
                registry=registry,
            ),
            lease_held=Gauge(
                "connector_lease_held", "1 while this process holds the connector's lease.",
                # Under the supervisor (prometheus multiprocess mode): the live processes'
                # maximum, so a standby's 0 does not hide the holder's 1.
                ["connector"], registry=registry, multiprocess_mode="livemax",
            ),
            redis_errors=Counter(
                "connector_redis_errors", "Redis failures (unavailable, oom).",
                ["connector", "kind"], registry=registry,
            ),
            last_success=Gauge(
                "connector_last_success_timestamp_seconds", "Time of the last successful poll.",
                ["connector"], registry=registry, multiprocess_mode="max",
            ),
            degraded=Gauge(
                "connector_degraded", "1 while every item of the connector's polls fails.",
                ["connector"], registry=registry, multiprocess_mode="livemax",
            ),
        )

    def observe_poll(self, name: str, summary: PollSummary | None, duration_s: float) -> None:
        if summary is None:
            self.polls.labels(name, "failure").inc()
            return
        self.polls.labels(name, "not_modified" if summary.not_modified else "success").inc()
        if not summary.not_modified:
            self.degraded.labels(name).set(1 if summary.all_items_failed else 0)
        self.poll_duration.labels(name).observe(duration_s)
        for outcome, count in (
            ("fetched", summary.fetched),
            ("published", summary.published),
            ("unchanged", summary.skipped_unchanged),
            ("failed", summary.failed),
            ("removed", summary.removed),
        ):
            if count:
                self.items.labels(name, outcome).inc(count)
