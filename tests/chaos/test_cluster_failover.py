"""A connector's commits on a real Redis Cluster of 3 masters with a replica each, under
faults: with REDIS_MIN_REPLICAS_ACKS the commit waits (WAIT) on the master that owns the
connector's slot; its slot moved to another master in the middle of a run (resharding,
keys migrated a few at a time); its master killed and its replica taking over. In each,
every commit that was acknowledged is in the stream and in the versions afterwards. And a
consumer reading the shards while one of their masters is killed: every entry still runs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as sync_redis
from redis import exceptions as redis_errors

from framework.core import (
    KeyScheme,
    LeaseLostError,
    RedisUnavailableError,
    StateConflictError,
    SystemClock,
    create_redis,
)
from framework.polling import ConnectorConfig, Lease, StateStore
from framework.polling.durability import ReplicaAcks, ReplicasNotAckedError
from framework.polling.state import Change
from framework.testing import RedisCluster
from tests.chaos.test_cluster_consume import SHARDS, consumer_on, emitted_items, eventually, item

pytestmark = pytest.mark.slow  # a 6-node cluster, runs of several seconds

TAGGED = KeyScheme(tagged=True)
BATCH = 5


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3, replicas=1) as servers:
        yield servers


class Run:
    """A connector committing batches of new items in a loop, as its polls would:
    what it was told is committed (``acked``) and the failures it rode out."""

    def __init__(self, url: str, name: str, acks: ReplicaAcks) -> None:
        self.redis: Any = create_redis(url)
        config = ConnectorConfig.model_validate(
            {"name": name, "type": "T", "outputStream": "signals", "outputShards": 3})
        self.keys = config.keys(TAGGED)
        self.lease = Lease(self.redis, name, ttl_s=60, key=self.keys.lease)
        self.store = StateStore(self.redis, config, self.lease, clock=SystemClock(),
                                scheme=TAGGED, acks=acks)
        self.acked: set[str] = set()
        self.failures: Counter[str] = Counter()
        self._next = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Run:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
        await self.redis.aclose()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)

    async def until_acked(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert self._task is not None and not self._task.done(), self._task
            assert time.monotonic() < deadline, (len(self.acked), self.failures)
            await asyncio.sleep(0.05)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self._commit_next()
            except (RedisUnavailableError, StateConflictError, LeaseLostError,
                    redis_errors.RedisError) as exc:
                self.failures[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.005)

    async def _commit_next(self) -> None:
        if not await self.redis.exists(self.keys.lease):
            # A failover may drop the lease's own write: take it again.
            assert await self.lease.try_acquire()
        batch = [f"i{self._next + k}" for k in range(BATCH)]
        state = await self.store.load()
        await self.store.commit(state, [Change(i, "v1", b"{}") for i in batch
                                        if state.item_versions.get(i) != "v1"])
        self.acked.update(batch)
        self._next += BATCH

    async def missing(self) -> tuple[set[str], set[str]]:
        """Acknowledged items absent from the stream, and from the versions."""
        published = {f["item_id"] for _, f in await self.redis.xrange(self.keys.output_stream)}
        versions = set(await self.redis.hgetall(self.keys.versions))
        return self.acked - published, self.acked - versions


@pytest.fixture
async def fresh(replicated: RedisCluster) -> AsyncIterator[RedisCluster]:
    client: Any = create_redis(replicated.url)
    await client.flushall(target_nodes=client.PRIMARIES)
    await client.aclose()
    yield replicated


async def test_a_commit_waits_for_the_replica_of_the_master_that_owns_its_slot(
    fresh: RedisCluster,
) -> None:
    async with Run(fresh.url, "waiting", ReplicaAcks(1, 2000)) as run:
        await run.until_acked(3 * BATCH)
        await run.stop()
        assert await run.missing() == (set(), set())
    replica = next(s for s in fresh.servers if s not in fresh.nodes and _replica_of(
        s, fresh.master_of(run.keys.output_stream).port))
    assert _replica_stream_length(replica, run.keys.output_stream) >= 3 * BATCH


async def test_a_commit_short_of_replicas_is_not_counted_as_published(
    fresh: RedisCluster,
) -> None:
    redis: Any = create_redis(fresh.url)
    config = ConnectorConfig.model_validate(
        {"name": "greedy", "type": "T", "outputStream": "signals", "outputShards": 3})
    lease = Lease(redis, "greedy", ttl_s=30, key=config.keys(TAGGED).lease)
    assert await lease.try_acquire()
    store = StateStore(redis, config, lease, clock=SystemClock(), scheme=TAGGED,
                       acks=ReplicaAcks(2, 300))  # each master has one replica
    try:
        with pytest.raises(ReplicasNotAckedError, match="acknowledged by 1 of 2 required"):
            await store.commit(await store.load(), [Change("a", "v1", b"{}")])
    finally:
        await redis.aclose()


async def test_moving_the_connectors_slot_during_a_run_loses_no_acknowledged_commit(
    fresh: RedisCluster,
) -> None:
    async with Run(fresh.url, "resharded", ReplicaAcks(1, 2000)) as run:
        await run.until_acked(10 * BATCH)
        stream = run.keys.output_stream
        target = next(n for n in fresh.nodes if n is not fresh.master_of(stream))
        # One key at a time, with commits running between: some find their keys on two
        # masters (TRYAGAIN / ASK) and are retried.
        await asyncio.to_thread(fresh.move_slot_of, stream, target,
                                batch=1, between=lambda: time.sleep(0.2))
        moved_at = len(run.acked)
        await run.until_acked(moved_at + 10 * BATCH)
        await run.stop()
        assert await run.missing() == (set(), set())

    assert fresh.master_of(stream) is target


async def test_a_master_killed_under_a_run_loses_no_acknowledged_commit(
    fresh: RedisCluster,
) -> None:
    async with Run(fresh.url, "failed-over", ReplicaAcks(1, 2000)) as run:
        await run.until_acked(10 * BATCH)
        stream = run.keys.output_stream
        victim = fresh.master_of(stream)
        victim.stop()  # SIGKILL
        killed_at = len(run.acked)
        try:
            await asyncio.to_thread(fresh.wait_for_takeover, victim.port, stream)
            # The promoted replica has no replica of its own: no commit may count as
            # published until one is back (the old master, rejoining as its replica).
            await asyncio.sleep(3.0)  # longer than a WAIT's 2 s timeout
            # (one commit whose acknowledgement was read just after the kill aside)
            assert len(run.acked) <= killed_at + BATCH
            assert run.failures["ReplicasNotAckedError"], run.failures
        finally:
            victim.start()
        await run.until_acked(killed_at + 10 * BATCH, timeout_s=90)
        await run.stop()
        assert await run.missing() == (set(), set())

    assert fresh.master_of(stream) is not victim
    assert run.failures  # the run did see its master go


def _replica_of(server: Any, master_port: int) -> bool:
    with sync_redis.Redis(port=server.port, decode_responses=True) as client:
        info = client.info("replication")
    return info.get("role") == "slave" and int(info.get("master_port", 0)) == master_port


def _replica_stream_length(server: Any, stream: str) -> int:
    with sync_redis.Redis(port=server.port, decode_responses=True) as client:
        client.execute_command("READONLY")
        return int(client.xlen(stream))


async def test_a_consumer_rides_out_a_master_killed_under_it_and_loses_no_entry(
    fresh: RedisCluster,
) -> None:
    redis: Any = create_redis(fresh.url)
    consumer = consumer_on(redis, claim_idle_ms=1000)
    task = asyncio.create_task(consumer.run())
    sent = [await _send(redis, i) for i in range(30)]
    await eventually(lambda: _emitted_all(redis, sent), timeout_s=30)
    victim = fresh.master_of(SHARDS[0])
    try:
        victim.stop()  # SIGKILL, with the consumer reading it
        await asyncio.to_thread(fresh.wait_for_takeover, victim.port, SHARDS[0])
        sent += [await _send(redis, i) for i in range(30, 60)]
        await eventually(lambda: _emitted_all(redis, sent), timeout_s=60)
        assert not task.done()  # it rode the failover out
    finally:
        victim.start()
        consumer.stop()
        await asyncio.wait_for(task, 30)
        await redis.aclose()


async def _send(redis: Any, n: int) -> str:
    """XADD item n to its shard, retried while the cluster fails over."""
    for _ in range(200):
        try:
            await redis.xadd(SHARDS[n % 3], item("src", f"f{n}"))
            return f"f{n}"
        except (redis_errors.RedisError, OSError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"item f{n} could not be sent")


async def _emitted_all(redis: Any, sent: list[str]) -> bool:
    try:
        return set(await emitted_items(redis)) >= set(sent)
    except (redis_errors.RedisError, OSError):
        return False
