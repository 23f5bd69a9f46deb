"""The watchdog when Redis is gone or frozen: it keeps trying (no crash, no sweep
without the lease), and it stops at once when cancelled."""

from __future__ import annotations

import asyncio
import time

from framework.core import SystemClock, create_redis
from framework.testing import RedisServer, free_port
from providers.devices import SweepResult, Watchdog, WatchdogSettings


async def test_with_redis_gone_the_watchdog_retries_and_stops_when_asked() -> None:
    redis = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    steps: list[SweepResult | None] = []
    tried_twice = asyncio.Event()

    def step_done(result: SweepResult | None) -> None:
        steps.append(result)
        if len(steps) >= 2:
            tried_twice.set()

    watchdog = Watchdog(redis, clock=SystemClock(),
                        settings=WatchdogSettings(sweep_interval_s=0.05), on_step=step_done)
    task = asyncio.create_task(watchdog.run())
    try:
        # Each step is redis-py's own retries (3, with backoff) before it fails over.
        async with asyncio.timeout(10):
            await tried_twice.wait()
        assert not task.done()  # still trying
        assert len(steps) >= 2 and steps == [None] * len(steps)  # tried again, never swept
        assert not watchdog.lease.held
    finally:
        task.cancel()
        async with asyncio.timeout(2):
            await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
    assert task.cancelled()


async def test_a_frozen_redis_does_not_hold_the_stop() -> None:
    with RedisServer() as server:
        redis = create_redis(server.url)
        watchdog = Watchdog(redis, clock=SystemClock(),
                            settings=WatchdogSettings(sweep_interval_s=0.05))
        other = create_redis(server.url)
        task = asyncio.create_task(watchdog.run())
        try:
            await asyncio.sleep(0.2)
            assert watchdog.lease.held
            # Redis stops answering for 1 s (a busy script): the cancel lands in a call.
            frozen = asyncio.create_task(other.eval(
                "local t = redis.call('TIME'); while true do local n = redis.call('TIME');"
                " if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1000000 then break end end",
                0))
            await asyncio.sleep(0.1)
        finally:
            stopping = time.monotonic()
            task.cancel()
            async with asyncio.timeout(3):
                await asyncio.gather(task, return_exceptions=True)
        stopped_s = time.monotonic() - stopping
        assert task.cancelled()
        assert stopped_s < 0.6  # not after the script's remaining ~0.9 s
        async with asyncio.timeout(10):  # the busy script ends after 1 s
            await frozen
        await other.aclose()
        await redis.aclose()
