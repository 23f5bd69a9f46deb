"""The in-process fleet's lease renewals on their own thread: a held lease outlives its
TTL while kept, and a lease taken by another instance is reported lost on the loop."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.polling import Lease
from framework.testing import RedisServer
from worker.fleet.lease_renewals import LeaseRenewals


@pytest.mark.slow  # waits 2.5 lease TTLs
async def test_kept_lease_outlives_its_ttl_and_a_stolen_one_is_reported_lost(
    redis: Redis, redis_server: RedisServer
) -> None:
    renewals = LeaseRenewals(redis_server.url, clock=SystemClock(),
                             logger=structlog.get_logger())
    renewals.start()
    lease = Lease(redis, "renewed", ttl_s=0.6)
    assert await lease.try_acquire()
    lost: asyncio.Queue[str] = asyncio.Queue()
    try:
        renewals.keep(lease, lost.put_nowait)
        await asyncio.sleep(1.5)  # 2.5 TTLs: gone by now unless renewed
        assert await redis.get(lease.key) == lease.token
        assert lost.empty()

        await redis.set(lease.key, "another-instance", px=5000)
        assert await asyncio.wait_for(lost.get(), timeout=2) == "lease_lost"
    finally:
        await asyncio.to_thread(renewals.close)
    assert await redis.get(lease.key) == "another-instance"
