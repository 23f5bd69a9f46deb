"""One poll of a connector as a task: cancellable on lease loss or a forced stop, its
failure sorted into what the schedule does next, its metrics recorded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from framework.core import (
    UNAVAILABLE,
    Clock,
    LeaseLostError,
    Logger,
    RateLimitedError,
    RedisUnavailableError,
    SourceError,
    StateConflictError,
    is_out_of_memory,
)
from framework.polling import (
    Lease,
    MetricsRecorder,
    PollingConnector,
    PollSummary,
    PrometheusMetrics,
)
from worker.connector.schedule import RedisBackoff
from worker.exit_codes import ExitCode


@dataclass
class PollOutcome:
    summary: PollSummary | None  # None: the poll failed or was cancelled
    retry_after_s: float | None = None
    redis_failed: bool = False
    error: tuple[str, str] | None = None  # (type, message) of a failed poll


class PollTask:
    """Runs one poll at a time; ``cancel`` stops the running one."""

    def __init__(self, name: str, *, lease: Lease, backoff: RedisBackoff,
                 metrics: PrometheusMetrics, logger: Logger) -> None:
        self._name = name
        self._lease = lease
        self._backoff = backoff
        self._prom = metrics
        self._log = logger
        self._task: asyncio.Task[PollSummary] | None = None

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def run(self, connector: PollingConnector) -> PollOutcome:
        self._task = asyncio.create_task(connector.poll(), name=f"poll:{self._name}")
        try:
            await asyncio.wait({self._task})
        finally:
            if not self._task.done():  # we were cancelled ourselves
                self._task.cancel()
        task, self._task = self._task, None
        if task.cancelled():
            self._log.warning("poll_cancelled", lease_held=self._lease.held)
            return PollOutcome(None)
        exc = task.exception()
        if exc is None:
            return PollOutcome(task.result())
        outcome = self._outcome_of(exc)
        outcome.error = (type(exc).__name__, str(exc) or type(exc).__name__)
        return outcome

    def _outcome_of(self, exc: BaseException) -> PollOutcome:
        if isinstance(exc, LeaseLostError):
            self._lease.held = False
            self._log.warning("lease_lost", error=str(exc))
        elif isinstance(exc, StateConflictError):
            self._log.warning("state_conflict", error=str(exc))
        elif isinstance(exc, (RedisUnavailableError, *UNAVAILABLE)):
            self._backoff.failed()
            kind = redis_error_kind(exc)
            self._prom.redis_errors.labels(self._name, kind).inc()
            self._log.error("poll_failed_redis", kind=kind, error=str(exc),
                            backoff_s=self._backoff.delay_s)
            return PollOutcome(None, redis_failed=True)
        elif isinstance(exc, SourceError):
            retry_after = exc.retry_after_s if isinstance(exc, RateLimitedError) else None
            self._log.error("poll_failed", error=str(exc), error_type=type(exc).__name__,
                            retry_after_s=retry_after)
            return PollOutcome(None, retry_after_s=retry_after)
        else:
            # A provider bug must not kill the loop: log it fully and carry on.
            self._log.error("poll_crashed", error=f"{type(exc).__name__}: {exc}",
                            exc_info=exc)
        return PollOutcome(None)


def once_exit_code(outcome: PollOutcome | None, *, finished: bool) -> ExitCode:
    """--once: whether its one poll did its job (a stop before it ran is not a failure)."""
    if outcome is None:
        return ExitCode.OK if finished else ExitCode.POLL_FAILED
    if outcome.redis_failed:
        return ExitCode.UNAVAILABLE
    if outcome.summary is None or outcome.summary.all_items_failed:
        return ExitCode.POLL_FAILED
    return ExitCode.OK


def redis_error_kind(exc: BaseException) -> str:
    """``oom`` when Redis refused for maxmemory (raw, or wrapped by ``redis_failures``),
    else ``unavailable``."""
    oom = is_out_of_memory(exc) or (
        isinstance(exc.__cause__, Exception) and is_out_of_memory(exc.__cause__))
    return "oom" if oom else "unavailable"


async def record_poll_metrics(redis: Redis, name: str, *, clock: Clock, logger: Logger,
                              summary: PollSummary | None, duration_s: float,
                              key: str | None = None) -> None:
    """The connector's metrics hash (at ``key``) in Redis; best effort: the poll's
    outcome stands."""
    try:
        recorder = MetricsRecorder(redis, name, key=key)
        await recorder.record_poll(at_s=clock.time(), latency_ms=duration_s * 1000,
                                   summary=summary)
    except Exception as exc:  # metrics are best effort; the poll's outcome stands
        logger.warning("metrics_write_failed", error=str(exc))


def summary_fields(summary: PollSummary) -> dict[str, Any]:
    return {
        "fetched": summary.fetched,
        "published": summary.published,
        "skipped_unchanged": summary.skipped_unchanged,
        "failed": summary.failed,
        "removed": summary.removed,
        "not_modified": summary.not_modified,
    }
