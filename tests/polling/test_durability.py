"""Commits that wait for replicas (WAIT): counted only once enough replicas hold them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis
from framework.core.errors import LeaseLostError
from framework.polling import ConnectorConfig, Lease, ReplicaAcks, ReplicasNotAckedError
from framework.polling.state import Change, StateStore
from framework.testing import RedisServer
from framework.testing.redis_topologies import wait_until

STREAM = "raw-input-signals"


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisServer]:
    """A master with one replica in sync."""
    with (
        RedisServer() as master,
        RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))) as replica,
    ):
        wait_until(lambda: _in_sync(replica), "the replica in sync")
        yield master


def _in_sync(replica: RedisServer) -> bool:
    import redis as sync_redis

    with sync_redis.Redis(port=replica.port, decode_responses=True) as client:
        return client.info("replication")["master_link_status"] == "up"


async def store_on(redis: Redis, acks: ReplicaAcks) -> StateStore:
    await redis.flushall()
    lease = Lease(redis, "durable", ttl_s=30)
    assert await lease.try_acquire()
    return StateStore(
        redis, ConnectorConfig(name="durable", type="TEST"), lease, clock=SystemClock(), acks=acks
    )


@pytest.fixture
async def master_client(replicated: RedisServer) -> AsyncIterator[Redis]:
    client = create_redis(replicated.url)
    yield client
    await client.aclose()


async def test_a_commit_acknowledged_by_the_replica_counts(master_client: Redis) -> None:
    store = await store_on(master_client, ReplicaAcks(replicas=1, timeout_ms=2000))

    await store.commit(await store.load(), [Change("a", "1", b"{}")])

    assert (await store.load()).item_versions == {"a": "1"}


async def test_a_commit_without_enough_replicas_is_not_counted(master_client: Redis) -> None:
    store = await store_on(master_client, ReplicaAcks(replicas=2, timeout_ms=100))

    with pytest.raises(ReplicasNotAckedError, match="acknowledged by 1 of 2 required replicas"):
        await store.commit(await store.load(), [Change("a", "1", b"{}")])
    # Not undone on the master (Redis has no rollback): the next poll rereads it.
    assert (await store.load()).item_versions == {"a": "1"}


async def test_a_refused_commit_is_refused_as_without_wait(master_client: Redis) -> None:
    store = await store_on(master_client, ReplicaAcks(replicas=1, timeout_ms=2000))
    state = await store.load()
    await master_client.set("lease:durable", "someone-else")

    with pytest.raises(LeaseLostError, match="lease is held by someone-else"):
        await store.commit(state, [Change("a", "1", b"{}")])
    assert await master_client.xlen(STREAM) == 0
