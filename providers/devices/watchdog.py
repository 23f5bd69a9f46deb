"""The heartbeat-absence watchdog: whoever holds its lease sweeps the due deadlines.

No timer per device: every device's deadline is a score in one sorted set
(``fleet:{devices}:deadlines``); ``sweep.lua`` takes at most ``batch_size`` of the
due ones per call, and the holder calls it again at once while batches come back
full, then sleeps ``sweep_interval_s``. Each due device becomes absent in the same
script that adds its one ``device.absent`` event and removes its deadline, so a
kill -9 at any point leaves each absence reported exactly once; the script checks
the lease token, so a replica that lost its lease (and has not noticed) cannot
sweep. Detection delay is at most one interval plus the sweep of what is due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from framework.core import (
    DEFAULT_STREAM_MAXLEN,
    UNAVAILABLE,
    Clock,
    Logger,
    get_logger,
    iso_utc,
    lua,
)
from framework.polling import Lease
from providers.devices.registry_keys import DeviceKeys


@dataclass(frozen=True)
class WatchdogSettings:
    sweep_interval_s: float = 0.25
    batch_size: int = 500
    # Batches per sweep before the loop yields (and renews the lease): bounded work.
    max_batches: int = 200
    lease_ttl_s: float = 10.0
    stream_max_len: int = DEFAULT_STREAM_MAXLEN

    def __post_init__(self) -> None:
        if not 0 < self.sweep_interval_s <= 60:
            raise ValueError(f"sweep interval must be in (0, 60] s, got {self.sweep_interval_s}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch size must be 1 to 10000, got {self.batch_size}")
        if not self.lease_ttl_s >= 1:
            raise ValueError(f"lease TTL must be at least 1 s, got {self.lease_ttl_s}")


@dataclass
class SweepResult:
    absent: int = 0
    suppressed: int = 0
    examined: int = 0
    next_deadline_ms: int | None = None
    delays_ms: list[int] = field(default_factory=list)
    fenced: bool = False  # the lease was not ours: nothing swept

    def add(self, other: SweepResult) -> None:
        self.absent += other.absent
        self.suppressed += other.suppressed
        self.examined += other.examined
        self.next_deadline_ms = other.next_deadline_ms
        self.delays_ms.extend(other.delays_ms)
        self.fenced = other.fenced


class Watchdog:
    def __init__(self, redis: Redis, *, clock: Clock, keys: DeviceKeys | None = None,
                 settings: WatchdogSettings | None = None, token: str | None = None,
                 logger: Logger | None = None,
                 on_step: Callable[[SweepResult | None], None] | None = None) -> None:
        """``on_step``: told each step's result (None: a standby), e.g. the metrics'
        :meth:`~providers.devices.watchdog_metrics.WatchdogMetrics.observe`."""
        self.keys = keys or DeviceKeys()
        self.settings = settings or WatchdogSettings()
        self._redis = redis
        self._clock = clock
        self.lease = Lease(redis, "devices-watchdog", ttl_s=self.settings.lease_ttl_s,
                           key=self.keys.watchdog_lease, token=token)
        self._sweep = redis.register_script(lua("providers.devices", "sweep"))
        self._log = logger or get_logger(component="device_watchdog")
        self._on_step = on_step

    async def sweep_batch(self) -> SweepResult:
        """One call of ``sweep.lua`` (at most ``batch_size`` devices)."""
        now_s = self._clock.time()
        reply = await self._sweep(
            keys=[self.keys.deadlines, self.keys.watchdog_lease, self.keys.events_stream],
            args=[int(now_s * 1000), self.settings.batch_size, self.lease.token,
                  iso_utc(now_s), self.settings.stream_max_len, self.keys.device_prefix,
                  self.keys.maintenance_prefix])
        if int(reply[0]) < 0:
            return SweepResult(fenced=True)
        next_ms = int(reply[3])
        return SweepResult(int(reply[0]), int(reply[1]), int(reply[2]),
                           next_ms if next_ms >= 0 else None, [int(d) for d in reply[4:]])

    async def sweep(self) -> SweepResult:
        """Batches until one comes back short (nothing more is due), the lease is not
        ours, or ``max_batches`` ran."""
        total = SweepResult()
        for _ in range(self.settings.max_batches):
            batch = await self.sweep_batch()
            total.add(batch)
            if batch.fenced or batch.examined < self.settings.batch_size:
                break
        if total.absent or total.suppressed:
            self._log.info("device_watchdog_swept", absent=total.absent,
                           suppressed=total.suppressed, examined=total.examined,
                           max_delay_ms=max(total.delays_ms, default=0))
        return total

    async def step(self) -> SweepResult | None:
        """Take or renew the lease, then sweep if it is ours; None when a standby."""
        was_held = self.lease.held
        held = await (self.lease.renew() if was_held else self.lease.try_acquire())
        if held != was_held:
            self._log.info("device_watchdog_lease_taken" if held else "device_watchdog_lease_lost",
                           token=self.lease.token[:8])
        if not held:
            return None
        result = await self.sweep()
        if result.fenced:
            self.lease.held = False
        return result

    async def run(self) -> None:
        """Step every ``sweep_interval_s`` until cancelled (the caller releases the
        lease on a clean stop: :meth:`release`). Redis outages are logged and retried."""
        while True:
            try:
                result = await self.step()
            except UNAVAILABLE as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancel that landed inside a Redis call can surface as a
                    # connection error: it is still a cancel, never a retry.
                    raise asyncio.CancelledError from exc
                self.lease.held = False
                self._log.warning("device_watchdog_redis_unavailable", error=type(exc).__name__)
                result = None
            if self._on_step is not None:
                self._on_step(result)
            if result is not None and result.examined >= self.settings.batch_size:
                await self._clock.sleep(0)  # more is due: go on at once, yielding
                continue
            await self._clock.sleep(self.settings.sweep_interval_s)

    async def release(self) -> None:
        if self.lease.held:
            await self.lease.release()
