"""The pipelined, diff-while-committing publish path keeps the fenced commit exact:
a refused chunk stops every later chunk, a poll cancelled with chunks in flight
neither loses nor repeats an item, and chunks reach Redis while the poll diffs."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import LeaseLostError
from framework.polling.config import ConnectorConfig
from framework.polling.lease import Lease
from framework.polling.poller import content_version
from framework.polling.state import Change, StateStore
from framework.testing import RedisServer
from tests.helpers import ListSource, make_connector, stream_items


class WrongForFirstChunk:
    """A fence whose token is wrong for the first chunk only (as if the lease had
    passed to another instance and back)."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self.reads = 0

    @property
    def token(self) -> str:
        self.reads += 1
        return "another-instance" if self.reads == 1 else self._lease.token


async def test_a_refused_chunk_stops_every_later_chunk_even_when_the_generation_fits(
    redis: Redis,
) -> None:
    lease = Lease(redis, "pipe", ttl_s=30)
    assert await lease.try_acquire()
    fence = WrongForFirstChunk(lease)
    store = StateStore(
        redis, ConnectorConfig(name="pipe", type="TEST"), fence, clock=SystemClock(), chunk_items=10
    )
    state = await store.load()
    # Another writer moves the generation by one: what the second chunk expects.
    await redis.hincrby("connector:state:pipe", "generation", 1)

    with pytest.raises(LeaseLostError):
        await store.commit(state, [Change(f"i{n}", "v1", b"{}") for n in range(30)])

    assert fence.reads >= 2  # later chunks were sent with the right token
    assert await redis.xlen("raw-input-signals") == 0
    assert await redis.hlen("connector:state:pipe:versions") == 0
    assert await redis.hget("connector:state:pipe", "generation") == "1"


def numbered(count: int, value: int) -> list[dict[str, Any]]:
    return [{"id": f"i{n}", "value": value} for n in range(count)]


@pytest.mark.slow
async def test_polls_cancelled_with_chunks_in_flight_publish_each_version_once(
    redis: Redis,
) -> None:
    source = ListSource()
    connector, _ = await make_connector(redis, source, chunk_items=100)
    cancelled = 0
    for value in range(1, 6):
        source.items = numbered(20_000, value)
        published_before = await redis.xlen("raw-input-signals")
        task = asyncio.create_task(connector.poll())
        # Cancelled once some of its chunks are applied, with more in flight.
        while await redis.xlen("raw-input-signals") < published_before + 1000:  # noqa: ASYNC110 - another writer's progress, seen in Redis
            await asyncio.sleep(0.001)
        cancelled += task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await connector.poll()  # finishes what the last cancelled poll left

    published = Counter((e["item_id"], e["version"]) for e in await stream_items(redis))
    assert [key for key, count in published.items() if count > 1] == []
    current = await redis.hgetall("connector:state:test-source:versions")
    assert current == {raw["id"]: content_version(raw) for raw in numbered(20_000, 5)}
    assert all(key in published for key in current.items())
    assert cancelled >= 3
    assert (await connector.poll()).published == 0


async def test_chunks_are_committed_while_the_poll_still_diffs(
    redis: Redis, redis_server: RedisServer
) -> None:
    watcher = sync_redis.Redis.from_url(redis_server.url)
    seen_at_last_item: list[int] = []

    def item_id(raw: dict[str, Any]) -> str:
        if raw["id"] == "i1999":
            seen_at_last_item.append(watcher.xlen("raw-input-signals"))
        return str(raw["id"])

    source = ListSource(numbered(2000, 1))
    connector, _ = await make_connector(redis, source, chunk_items=100, id_of=item_id)

    summary = await connector.poll()
    watcher.close()

    assert summary.published == 2000
    # Most chunks were applied before the last item was even looked at: the poll
    # holds a few chunks of changes, never all of them.
    assert seen_at_last_item and seen_at_last_item[0] >= 1000
