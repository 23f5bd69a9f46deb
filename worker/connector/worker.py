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
import secrets
from typing import Any

import structlog

from framework.core import (
    LEASE_RENEW_FRACTION,
    LOST_LEASE_BACKOFF_S,
    STANDBY_CHECK_INTERVAL_S,
    UNAVAILABLE,
    RedisUnavailableError,
    cancel_and_wait,
    redact_url,
    redis_failures,
)
from framework.polling import (
    ConnectorConfig,
    FleetConfig,
    Lease,
    PrometheusMetrics,
    PushingConnector,
)
from worker.connector.control import ConnectorControl
from worker.connector.health import connector_health
from worker.connector.poll import (
    PollOutcome,
    PollTask,
    once_exit_code,
    record_poll_metrics,
    redis_error_kind,
    summary_fields,
)
from worker.connector.renewer import LeaseRenewer
from worker.connector.schedule import RedisBackoff, next_slot
from worker.connector.setup import ConnectorSetup
from worker.exit_codes import ExitCode
from worker.runtime import Runtime

# ``--once`` gives up on a Redis that does not answer one lease attempt within this
# (a frozen server would otherwise hold it for the client's timeouts and retries).
ONCE_REDIS_DEADLINE_S = 15.0
PUSH_RETRY_S = 1.0


class ConnectorWorker:
    """A :class:`~worker.runtime.Service`. ``once``: one poll, then exit: 0 when it
    succeeded, 74 when it failed (or every item failed), 69 when Redis did not answer
    (within its client's retries, and at most ``ONCE_REDIS_DEADLINE_S``), 75 when
    another instance holds the lease."""

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        metrics: PrometheusMetrics,
        *,
        once: bool = False,
        first_poll_delay_s: float = 0.0,
        context_extras: dict[str, Any] | None = None,
        renewer: LeaseRenewer | None = None, replica: str | None = None,
    ) -> None:
        self.name = name
        self._runtime = runtime
        self._clock = runtime.clock
        self._log = runtime.logger
        self._prom = metrics
        self._once = once
        self._first_poll_delay_s = first_poll_delay_s
        self._renewer = renewer
        self._setup = ConnectorSetup(name, runtime, context_extras or {}, replica)
        self._backoff = RedisBackoff()
        self._wake = asyncio.Event()
        self._stopping = False
        self._reload_requested = False
        self._disabled = False
        self.started_at_s = self._clock.time()
        self.last_success_s: float | None = None
        self.last_outcome: PollOutcome | None = None
        self.degraded = False  # every item of the last poll that fetched any failed
        self._redis_gave_up = False  # --once: Redis did not answer
        self._control = ConnectorControl(name, runtime.redis, clock=self._clock,
                                         wake=self._wake.set, reload=self.request_reload,
                                         restart=self._setup.request_restart)
        # Set by start().
        self.lease: Lease
        self._polls: PollTask

    @property
    def config(self) -> ConnectorConfig:
        return self._setup.config

    # -- control (called from signal handlers) ---------------------------------

    def request_stop(self) -> None:
        """First call: drain (finish the current poll, bounded). Second: stop now."""
        if self._stopping:
            self._log.warning("stop_forced")
            self._polls.cancel()
            return
        self._stopping = True
        self._wake.set()
        drain_timeout_s = self._runtime.drain_timeout_s
        asyncio.get_running_loop().call_later(drain_timeout_s, self._polls.cancel)
        self._log.info("stop_requested", drain_timeout_s=drain_timeout_s)

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Read the config and build the connector; raises ConfigError."""
        config = self._setup.load()
        self.lease = Lease(self._runtime.redis, self.name, ttl_s=config.lease_ttl_seconds,
                           key=self._setup.lease_key(config))
        self._log = self._log.bind(instance=self.lease.token)
        self._setup.build(config, self.lease, self._log)
        self._polls = PollTask(self.name, lease=self.lease, backoff=self._backoff,
                               metrics=self._prom, logger=self._log)
        self._log.info("worker_started", redis=redact_url(self._runtime.redis_url),
                       config=config.redacted(self._setup.fleet.secrets), once=self._once)

    async def run(self) -> int:
        """Standby/active until stopped or disabled; always releases and closes."""
        watcher = None if self._once else asyncio.create_task(self._control.watch(self._log))
        try:
            while not self._finished:
                if not await self._wait_for_lease():
                    return self._standby_exit_code()
                await self._lead()
                if self._once:
                    return once_exit_code(self.last_outcome, finished=self._finished)
                # Give the standbys the first chance at the lease this one just lost.
                await self._pause(LOST_LEASE_BACKOFF_S)
            return ExitCode.OK
        finally:
            await cancel_and_wait(*([watcher] if watcher else []))
            await self._shutdown()

    def _standby_exit_code(self) -> ExitCode:
        if not self._once or self._finished:
            return ExitCode.OK
        return ExitCode.UNAVAILABLE if self._redis_gave_up else ExitCode.LEASE_HELD

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
        await self._setup.connector.aclose()
        self._log.info("worker_stopped", disabled=self._disabled)

    # -- standby -----------------------------------------------------------------

    async def _wait_for_lease(self) -> bool:
        announced = False
        while not self._finished:
            await self._apply_reload_if_requested()
            try:
                async with redis_failures(self.name), self._once_deadline():
                    if await self.lease.try_acquire():
                        self._backoff.reset()
                        self._prom.lease_held.labels(self.name).set(1)
                        self._log.info("lease_acquired", ttl_s=self.lease.ttl_s)
                        return True
                    if self._once or not announced:
                        info = await self.lease.info()
            except (*UNAVAILABLE, RedisUnavailableError, TimeoutError) as exc:
                # Down, or out of memory (SET NX is refused at maxmemory even when the
                # key exists): back off as an active instance does, never crash.
                delay_s = self._standby_failed(exc)
                if self._once:
                    self._redis_gave_up = True
                    return False
                await self._pause(delay_s)
                continue
            if self._once:
                self._log.warning("lease_held_elsewhere", holder=info.holder)
                return False
            if not announced:
                self._log.info("standby", holder=info.holder, ttl_ms=info.ttl_ms)
                announced = True
            await self._pause(STANDBY_CHECK_INTERVAL_S)
        return False

    def _once_deadline(self) -> asyncio.Timeout:
        return asyncio.timeout(ONCE_REDIS_DEADLINE_S if self._once else None)

    def _standby_failed(self, exc: BaseException) -> float:
        """Count and log a Redis failure while waiting for the lease; the pause it calls for."""
        kind = redis_error_kind(exc)
        self._prom.redis_errors.labels(self.name, kind).inc()
        delay_s = self._backoff.failed()
        self._log.warning("redis_unavailable", where="standby", kind=kind,
                          error=str(exc) or type(exc).__name__, backoff_s=delay_s)
        return delay_s

    # -- active ------------------------------------------------------------------

    async def _lead(self) -> None:
        keep = self._keep_lease() if self._renewer is None else self._await_lease_loss(
            self._renewer)
        keeper = asyncio.create_task(keep, name=f"lease-keeper:{self.name}")
        try:
            await self._poll_loop()
        finally:
            await cancel_and_wait(keeper)
            if not self.lease.held:
                self._prom.lease_held.labels(self.name).set(0)
            connector = self._setup.connector
            if isinstance(connector, PushingConnector):
                # A broker session kept open by a standby would hold messages that
                # the new holder should get.
                await connector.suspend()

    async def _keep_lease(self) -> None:
        """Renew at a fraction of the TTL; on loss, stop the current poll at once."""
        last_renewed = self._clock.monotonic()
        while True:
            await self._clock.sleep(self.lease.ttl_s * LEASE_RENEW_FRACTION)
            try:
                async with redis_failures(self.name):
                    if await self.lease.renew():
                        last_renewed = self._clock.monotonic()
                        continue
                    info = await self.lease.info()
                self._log.warning("lease_lost", holder=info.holder)
            except (*UNAVAILABLE, RedisUnavailableError) as exc:
                # We may still hold it: Redis keeps the key until its TTL runs out.
                if self._clock.monotonic() - last_renewed < self.lease.ttl_s:
                    self._log.warning("lease_renew_failed", error=str(exc))
                    continue
                self._log.warning("lease_expired_while_redis_unavailable", error=str(exc))
            self._lease_gone()
            return

    async def _await_lease_loss(self, renewer: LeaseRenewer) -> None:
        """The renewer renews; this waits for it to say the lease is lost."""
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_lost(event: str) -> None:
            if not lost.done():
                lost.set_result(event)

        renewer.keep(self.lease, on_lost)
        try:
            event = await lost
        finally:
            renewer.drop(self.lease)
        self._log.warning(event)
        self._lease_gone()

    def _lease_gone(self) -> None:
        """Stop the current poll at once; the loop goes back to standby."""
        self.lease.held = False
        self._prom.lease_held.labels(self.name).set(0)
        self._polls.cancel()
        self._wake.set()

    # -- schedule ------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        next_start = self._clock.monotonic() + (0.0 if self._once else self._first_poll_delay_s)
        while self.lease.held and not self._finished:
            next_start = await self._sleep_until_next_poll(next_start)
            if not self.lease.held or self._finished:
                return
            if not self._once and await self._control.check_paused(self._log):
                next_start = self._next_start(next_start, PollOutcome(None))
                continue  # paused by an operator: the lease is kept, no poll runs
            outcome = await self._poll_once(start_delay_s=self._clock.monotonic() - next_start)
            if self._once:
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
            if self._control.take_poll_now():
                return self._clock.monotonic()  # the schedule starts again from now
            await self._pause(remaining)
        return next_start

    def _next_start(self, due: float, outcome: PollOutcome) -> float:
        now = self._clock.monotonic()
        if isinstance(self._setup.connector, PushingConnector):
            # A push source's windows follow each other; after a failed one, the
            # source is given a moment rather than a tight loop of failures.
            next_start = now if outcome.summary is not None else now + PUSH_RETRY_S
        else:
            slot = next_slot(due, now=now, interval_s=self.config.poll_interval_ms / 1000)
            if slot.skipped:
                self._log.warning("poll_overran_interval", skipped_slots=slot.skipped)
            next_start = slot.start
        if outcome.retry_after_s is not None:
            next_start = max(next_start, now + outcome.retry_after_s)
        if outcome.redis_failed:
            next_start = max(next_start, now + self._backoff.delay_s)
        return next_start

    async def _poll_once(self, *, start_delay_s: float) -> PollOutcome:
        started_mono = self._clock.monotonic()
        self._prom.start_delay.labels(self.name).observe(max(0.0, start_delay_s))
        with structlog.contextvars.bound_contextvars(poll_id=secrets.token_hex(6)):
            outcome = self.last_outcome = await self._polls.run(self._setup.connector)
            duration_s = self._clock.monotonic() - started_mono
            self._prom.observe_poll(self.name, outcome.summary, duration_s)
            metrics_key = self._setup.config.keys(self._runtime.keys).metrics
            await record_poll_metrics(self._runtime.redis, self.name, clock=self._clock,
                                      logger=self._log, summary=outcome.summary,
                                      duration_s=duration_s, key=metrics_key)
            if outcome.error is not None:
                await self._control.record_error(outcome.error[1], outcome.error[0], self._log)
            if outcome.summary is not None:
                self._backoff.reset()
                self.last_success_s = self._clock.time()
                self._prom.last_success.labels(self.name).set(self.last_success_s)
                if not outcome.summary.not_modified:
                    self.degraded = outcome.summary.all_items_failed
                # A push connector's windows follow each other: an idle one is not news.
                idle = outcome.summary.fetched == 0 and isinstance(
                    self._setup.connector, PushingConnector)
                (self._log.debug if idle else self._log.info)(
                    "poll_completed", duration_ms=round(duration_s * 1000, 1),
                    start_delay_ms=round(start_delay_s * 1000, 1),
                    **summary_fields(outcome.summary))
        return outcome

    # -- reload ------------------------------------------------------------------

    async def _apply_reload_if_requested(self) -> None:
        if not self._reload_requested:
            return
        self._reload_requested = False
        if not await self._setup.reload(self.lease, self._log):
            self._disabled = True

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

    def fleet(self) -> FleetConfig:
        """The fleet configuration this worker last applied (for the ops API)."""
        return self._setup.fleet

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details) for the /health endpoint."""
        return connector_health(self, paused=self._control.paused, now_s=self._clock.time())
