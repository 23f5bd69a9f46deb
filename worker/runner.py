"""``ConnectorWorker``: runs one connector for as long as it holds the lease.

Lifecycle::

    standby --(lease acquired)--> active --(lease lost)--> standby
       |                            |
       +------(stop / disabled)-----+--> drain current poll, release lease, close

While active, polls start at a fixed rate (``pollIntervalMs``, drift-corrected;
late starts skip missed slots rather than bunching up) and never overlap. The
lease is renewed in the background; its token fences every commit, so losing
it stops publishing at once even before the worker notices.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis

from framework.core import (
    LEASE_RENEW_FRACTION,
    LOST_LEASE_BACKOFF_S,
    STANDBY_CHECK_INTERVAL_S,
    UNAVAILABLE,
    Clock,
    ConfigError,
    LeaseLostError,
    Logger,
    RateLimitedError,
    RedisUnavailableError,
    SourceError,
    StateConflictError,
    UnknownConnectorError,
    cancel_and_wait,
    is_out_of_memory,
)
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    ConnectorRegistry,
    FleetConfig,
    Lease,
    MetricsRecorder,
    PollingConnector,
    PollSummary,
    PrometheusMetrics,
    StateStore,
)
from worker.exit_codes import ExitCode

_REDIS_BACKOFF_MAX_S = 30.0
# Unhealthy when no poll succeeded within this many intervals.
_HEALTHY_INTERVALS = 3


@dataclass
class _PollOutcome:
    summary: PollSummary | None
    retry_after_s: float | None = None
    redis_failed: bool = False


class ConnectorWorker:
    def __init__(
        self,
        name: str,
        *,
        redis: Redis,
        registry: ConnectorRegistry,
        load_config: Callable[[], FleetConfig],
        clock: Clock,
        logger: Logger,
        prometheus: PrometheusMetrics,
        drain_timeout_s: float,
        first_poll_delay_s: float = 0.0,
        context_extras: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._redis = redis
        self._registry = registry
        self._load_config = load_config
        self._clock = clock
        self._log = logger
        self._prom = prometheus
        self._drain_timeout_s = drain_timeout_s
        self._first_poll_delay_s = first_poll_delay_s
        self._context_extras = context_extras or {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._reload_requested = False
        self._disabled = False
        self._poll_task: asyncio.Task[PollSummary] | None = None
        self._redis_failures = 0
        self.started_at_s = clock.time()
        self.last_success_s: float | None = None
        # Set by start(): everything that depends on the current config.
        self.config: ConnectorConfig
        self._fleet: FleetConfig
        self.lease: Lease
        self._connector: PollingConnector

    # -- control (called from signal handlers) ---------------------------------

    def request_stop(self) -> None:
        """First call: drain (finish the current poll, bounded). Second: stop now."""
        if self._stopping:
            self._log.warning("stop_forced")
            self._cancel_poll()
            return
        self._stopping = True
        self._wake.set()
        asyncio.get_running_loop().call_later(self._drain_timeout_s, self._cancel_poll)
        self._log.info("stop_requested", drain_timeout_s=self._drain_timeout_s)

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Read the config and build the connector; raises ConfigError."""
        fleet = self._load_config()
        config = self._config_from(fleet)
        self._fleet = fleet
        self.lease = Lease(self._redis, self.name, ttl_s=config.lease_ttl_seconds)
        self._log = self._log.bind(instance=self.lease.token)
        self._build(config)

    async def run(self, *, once: bool = False) -> ExitCode:
        """Standby/active until stopped or disabled; always releases and closes."""
        try:
            while not self._finished:
                if not await self._wait_for_lease(once):
                    return ExitCode.LEASE_HELD if once and not self._finished else ExitCode.OK
                await self._lead(once)
                if once:
                    break
                # Give the standbys the first chance at the lease this one just lost.
                await self._pause(LOST_LEASE_BACKOFF_S)
            return ExitCode.OK
        finally:
            await self._shutdown()

    @property
    def _finished(self) -> bool:
        return self._stopping or self._disabled

    async def _shutdown(self) -> None:
        if self.lease.held:
            try:
                await self.lease.release()
                self._log.info("lease_released")
            except (*UNAVAILABLE, RedisUnavailableError) as exc:
                self._log.warning("lease_release_failed", error=str(exc))
        self._prom.lease_held.labels(self.name).set(0)
        await self._connector.aclose()
        self._log.info("worker_stopped", disabled=self._disabled)

    # -- standby -----------------------------------------------------------------

    async def _wait_for_lease(self, once: bool) -> bool:
        announced = False
        while not self._finished:
            await self._apply_reload_if_requested()
            try:
                if await self.lease.try_acquire():
                    self._redis_failures = 0
                    self._prom.lease_held.labels(self.name).set(1)
                    self._log.info("lease_acquired", ttl_s=self.lease.ttl_s)
                    return True
                if once:
                    info = await self.lease.info()
                    self._log.warning("lease_held_elsewhere", holder=info.holder)
                    return False
                if not announced:
                    info = await self.lease.info()
                    self._log.info("standby", holder=info.holder, ttl_ms=info.ttl_ms)
                    announced = True
                await self._pause(STANDBY_CHECK_INTERVAL_S)
            except UNAVAILABLE as exc:
                await self._pause(self._redis_backoff("standby", exc))
        return False

    # -- active ------------------------------------------------------------------

    async def _lead(self, once: bool) -> None:
        keeper = asyncio.create_task(self._keep_lease(), name=f"lease-keeper:{self.name}")
        try:
            await self._poll_loop(once)
        finally:
            await cancel_and_wait(keeper)
            if not self.lease.held:
                self._prom.lease_held.labels(self.name).set(0)

    async def _keep_lease(self) -> None:
        """Renew at a fraction of the TTL; on loss, stop the current poll at once."""
        last_renewed = self._clock.monotonic()
        while True:
            await self._clock.sleep(self.lease.ttl_s * LEASE_RENEW_FRACTION)
            try:
                if await self.lease.renew():
                    last_renewed = self._clock.monotonic()
                    continue
                info = await self.lease.info()
                self._log.warning("lease_lost", holder=info.holder)
            except UNAVAILABLE as exc:
                # We may still hold it: Redis keeps the key until its TTL runs out.
                if self._clock.monotonic() - last_renewed < self.lease.ttl_s:
                    self._log.warning("lease_renew_failed", error=str(exc))
                    continue
                self._log.warning("lease_expired_while_redis_unavailable", error=str(exc))
            self.lease.held = False
            self._prom.lease_held.labels(self.name).set(0)
            self._cancel_poll()
            self._wake.set()
            return

    async def _poll_loop(self, once: bool) -> None:
        next_start = self._clock.monotonic() + (0.0 if once else self._first_poll_delay_s)
        while self.lease.held and not self._finished:
            next_start = await self._sleep_until_next_poll(next_start)
            if not self.lease.held or self._finished:
                return
            outcome = await self._poll_once(start_delay_s=self._clock.monotonic() - next_start)
            if once:
                return
            next_start = self._next_start(next_start, outcome)

    async def _sleep_until_next_poll(self, next_start: float) -> float:
        """Sleep until ``next_start``; a reload may move it to the new interval."""
        previous_interval_s = self.config.poll_interval_ms / 1000
        while not self._finished and self.lease.held:
            remaining = next_start - self._clock.monotonic()
            if self._reload_requested:
                await self._apply_reload_if_requested()
                interval_s = self.config.poll_interval_ms / 1000
                next_start += interval_s - previous_interval_s
                previous_interval_s = interval_s
                continue
            if remaining <= 0:
                break
            await self._pause(remaining)
        return next_start

    def _next_start(self, slot: float, outcome: _PollOutcome) -> float:
        """The next slot on the grid of ``slot`` (where the poll was due, not where it
        started, so lateness never accumulates) that is still ahead of us."""
        interval_s = self.config.poll_interval_ms / 1000
        now = self._clock.monotonic()
        slots = max(1, math.ceil((now - slot) / interval_s))
        next_start = slot + slots * interval_s
        if slots > 1:
            self._log.warning("poll_overran_interval", skipped_slots=slots - 1)
        if outcome.retry_after_s is not None:
            next_start = max(next_start, now + outcome.retry_after_s)
        if outcome.redis_failed:
            next_start = max(next_start, now + self._backoff_s())
        return next_start

    async def _poll_once(self, *, start_delay_s: float) -> _PollOutcome:
        poll_id = secrets.token_hex(6)
        started_mono = self._clock.monotonic()
        self._prom.start_delay.labels(self.name).observe(max(0.0, start_delay_s))
        with structlog.contextvars.bound_contextvars(poll_id=poll_id):
            outcome = await self._run_poll()
            duration_s = self._clock.monotonic() - started_mono
            self._prom.observe_poll(self.name, outcome.summary, duration_s)
            await self._record_metrics(outcome.summary, duration_s)
            if outcome.summary is not None:
                self._redis_failures = 0
                self.last_success_s = self._clock.time()
                self._prom.last_success.labels(self.name).set(self.last_success_s)
                self._log.info("poll_completed", duration_ms=round(duration_s * 1000, 1),
                               start_delay_ms=round(start_delay_s * 1000, 1),
                               **_summary_fields(outcome.summary))
        return outcome

    async def _run_poll(self) -> _PollOutcome:
        self._poll_task = asyncio.create_task(self._connector.poll(), name=f"poll:{self.name}")
        try:
            await asyncio.wait({self._poll_task})
        finally:
            if not self._poll_task.done():  # we were cancelled ourselves
                self._poll_task.cancel()
        task, self._poll_task = self._poll_task, None
        if task.cancelled():
            self._log.warning("poll_cancelled", lease_held=self.lease.held)
            return _PollOutcome(None)
        return self._outcome_of(task.exception(), task)

    def _outcome_of(
        self, exc: BaseException | None, task: asyncio.Task[PollSummary]
    ) -> _PollOutcome:
        if exc is None:
            return _PollOutcome(task.result())
        if isinstance(exc, LeaseLostError):
            self.lease.held = False
            self._log.warning("lease_lost", error=str(exc))
        elif isinstance(exc, StateConflictError):
            self._log.warning("state_conflict", error=str(exc))
        elif isinstance(exc, (RedisUnavailableError, *UNAVAILABLE)):
            self._redis_failures += 1
            kind = "oom" if isinstance(exc.__cause__, Exception) and is_out_of_memory(
                exc.__cause__) else "unavailable"
            self._prom.redis_errors.labels(self.name, kind).inc()
            self._log.error("poll_failed_redis", kind=kind, error=str(exc),
                            backoff_s=self._backoff_s())
            return _PollOutcome(None, redis_failed=True)
        elif isinstance(exc, SourceError):
            retry_after = exc.retry_after_s if isinstance(exc, RateLimitedError) else None
            self._log.error("poll_failed", error=str(exc), error_type=type(exc).__name__,
                            retry_after_s=retry_after)
            return _PollOutcome(None, retry_after_s=retry_after)
        else:
            # A provider bug must not kill the loop: log it fully and carry on.
            self._log.error("poll_crashed", error=f"{type(exc).__name__}: {exc}",
                            exc_info=exc)
        return _PollOutcome(None)

    async def _record_metrics(self, summary: PollSummary | None, duration_s: float) -> None:
        try:
            recorder = MetricsRecorder(self._redis, self.name)
            await recorder.record_poll(
                at_s=self._clock.time(), latency_ms=duration_s * 1000, summary=summary
            )
        except Exception as exc:  # metrics are best effort; the poll's outcome stands
            self._log.warning("metrics_write_failed", error=str(exc))

    # -- reload ------------------------------------------------------------------

    async def _apply_reload_if_requested(self) -> None:
        if not self._reload_requested:
            return
        self._reload_requested = False
        try:
            fleet = self._load_config()
            config = self._config_from(fleet)
        except UnknownConnectorError as exc:
            self._log.warning("connector_removed", reason=str(exc))
            self._disabled = True
            return
        except ConfigError as exc:
            self._log.error("reload_rejected", reason=str(exc))
            return
        if not config.enabled:
            self._log.info("connector_disabled")
            self._disabled = True
            return
        if config == self.config:
            self._fleet = fleet
            self._log.info("reload_unchanged")
            return
        changed = _changed_fields(self.config, config)
        previous = self._connector
        try:
            self._build(config)
        except ConfigError as exc:
            self._log.error("reload_rejected", reason=str(exc))
            return
        await previous.aclose()
        self._fleet = fleet
        self._log.info("config_reloaded", changed=changed)

    def _config_from(self, fleet: FleetConfig) -> ConnectorConfig:
        config = fleet.get(self.name)
        if config is None:
            known = ", ".join(sorted(fleet.connectors)) or "none"
            raise UnknownConnectorError(
                f"not found in {fleet.source} (configured: {known})", connector=self.name
            )
        self._registry.factory_for(config)
        return config

    def _build(self, config: ConnectorConfig) -> None:
        """(Re)build the connector for ``config``; the caller closes the old one."""
        store = StateStore(self._redis, config, self.lease, clock=self._clock)
        context = ConnectorContext(
            store=store, clock=self._clock, logger=self._log, **self._context_extras
        )
        self._connector = self._registry.create(config, context)
        self.config = config
        self.lease.ttl_s = config.lease_ttl_seconds

    # -- helpers -----------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake early on stop, reload or lease loss."""
        self._wake.clear()
        if self._stopping or self._reload_requested:
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _backoff_s(self) -> float:
        return min(_REDIS_BACKOFF_MAX_S, 0.5 * 2.0 ** max(0, self._redis_failures - 1))

    def _redis_backoff(self, where: str, exc: BaseException) -> float:
        self._redis_failures += 1
        backoff = self._backoff_s()
        self._log.warning("redis_unavailable", where=where, error=str(exc), backoff_s=backoff)
        return backoff

    def _cancel_poll(self) -> None:
        if self._poll_task is not None and not self._poll_task.done():
            self._poll_task.cancel()

    def fleet(self) -> FleetConfig:
        """The fleet configuration this worker last applied (for the ops API)."""
        return self._fleet

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) for the /health endpoint."""
        details: dict[str, Any] = {
            "connector": self.name,
            "role": "active" if self.lease.held else "standby",
            "lastSuccessTime": self.last_success_s,
        }
        if not self.lease.held:
            return True, details
        horizon = _HEALTHY_INTERVALS * self.config.poll_interval_ms / 1000
        reference = self.last_success_s or self.started_at_s
        healthy = self._clock.time() - reference <= horizon + self.config.request_timeout_ms / 1000
        if not healthy:
            details["reason"] = f"no successful poll within {_HEALTHY_INTERVALS} intervals"
        return healthy, details


def _summary_fields(summary: PollSummary) -> dict[str, Any]:
    return {
        "fetched": summary.fetched,
        "published": summary.published,
        "skipped_unchanged": summary.skipped_unchanged,
        "failed": summary.failed,
        "removed": summary.removed,
        "not_modified": summary.not_modified,
    }


def _changed_fields(old: ConnectorConfig, new: ConnectorConfig) -> list[str]:
    before, after = old.model_dump(by_alias=True), new.model_dump(by_alias=True)
    return sorted(key for key in after if before.get(key) != after[key])
