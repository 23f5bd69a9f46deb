"""Sentinel failover after a partition: with REDIS_MIN_REPLICAS_ACKS (WAIT) no commit
that was acknowledged is lost; without it, the commits made while the replicas
were cut off are lost with the master, which is the documented loss window."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
import redis as sync_redis

from framework.core import RedisUnavailableError, SystemClock, create_redis
from framework.core.errors import StateConflictError
from framework.polling import ConnectorConfig, Lease, ReplicaAcks
from framework.polling.state import Change, StateStore
from framework.testing import SentinelTrio

pytestmark = pytest.mark.slow  # a Sentinel trio, a partition and a failover: ~10 s each

STREAM = "raw-input-signals"


@pytest.fixture
def trio() -> Iterator[SentinelTrio]:
    with SentinelTrio(replicas=2) as started:
        yield started


class Publisher:
    """Commits one new item after another; ``acked`` lists those whose commit returned,
    ``acked_in_partition`` those that returned while the replicas were cut off."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.acked: list[str] = []
        self.acked_in_partition: list[str] = []
        self.partitioned = False
        self.refused = 0

    async def run(self, stop: asyncio.Event) -> None:
        number = 0
        while not stop.is_set():
            number += 1
            item = f"item-{number}"
            try:
                state = await self.store.load()
                await self.store.commit(state, [Change(item, "1", b'{"n": 1}')])
            except (RedisUnavailableError, StateConflictError):
                self.refused += 1
                await asyncio.sleep(0.02)
                continue
            (self.acked_in_partition if self.partitioned else self.acked).append(item)
            await asyncio.sleep(0.005)


def stream_ids(port: int) -> set[str]:
    with sync_redis.Redis(port=port, decode_responses=True) as client:
        return {fields["item_id"] for _, fields in client.xrange(STREAM)}


async def publish_through_partition_and_failover(
    trio: SentinelTrio, acks: ReplicaAcks
) -> tuple[Publisher, set[str]]:
    """Publish; cut the replicas off (frozen, their links to the master closed);
    publish on; kill the master, thaw the replicas, let Sentinel promote one; the
    publisher goes on against the new master. The items the new master holds."""
    redis = create_redis(trio.url, client_name="durability-test")
    config = ConnectorConfig(name="durable", type="TEST")
    lease = Lease(redis, "durable", ttl_s=120)
    assert await lease.try_acquire()
    assert await redis.wait(2, 2000) == 2  # the lease is on both replicas
    publisher = Publisher(StateStore(redis, config, lease, clock=SystemClock(), acks=acks))
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await asyncio.sleep(0.5)
        master = trio.master()
        publisher.partitioned = True  # first: a commit ending meanwhile counts as in it
        for replica in trio.replicas:
            os.kill(replica.pid, signal.SIGSTOP)
        with sync_redis.Redis(port=master.port) as client:
            client.client_kill_filter(_type="replica")
        await asyncio.sleep(0.6)
        old_port = trio.kill_master()
        for replica in trio.replicas:
            os.kill(replica.pid, signal.SIGCONT)
        await asyncio.to_thread(trio.wait_for_failover, old_port)
        publisher.partitioned = False
        before = len(publisher.acked)
        for _ in range(200):  # the publisher finds the new master and commits there
            if len(publisher.acked) > before + 5:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        with contextlib.suppress(RedisUnavailableError):
            await redis.aclose()
    return publisher, stream_ids(trio.master_port())


async def test_with_wait_no_acknowledged_commit_is_lost_when_the_master_dies(
    trio: SentinelTrio,
) -> None:
    publisher, held = await publish_through_partition_and_failover(
        trio, ReplicaAcks(replicas=1, timeout_ms=200)
    )

    acknowledged = set(publisher.acked) | set(publisher.acked_in_partition)
    assert publisher.refused > 0  # the partition's commits: no replica acknowledged them
    assert acknowledged - held == set()
    assert len(publisher.acked) > 10  # before the partition and after the failover


async def test_without_wait_the_commits_of_the_partition_are_lost_and_only_those(
    trio: SentinelTrio,
) -> None:
    publisher, held = await publish_through_partition_and_failover(trio, ReplicaAcks())

    lost = (set(publisher.acked) | set(publisher.acked_in_partition)) - held
    assert lost  # acknowledged by the master alone, then gone with it
    assert lost <= set(publisher.acked_in_partition)
