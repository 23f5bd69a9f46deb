"""Fault tests: Redis frozen, restarted or out of memory, processes killed at
random moments, and hostile peers (slow, huge, wrong or gone). Every test here is
marked ``chaos`` so the group can be run alone (``scripts/test -m chaos``); CI runs
it with the rest of the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from framework.testing import RedisCluster

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="module")
def cluster_servers() -> Iterator[RedisCluster]:
    """A private 3-master Redis Cluster, shared by the tests of one module."""
    with RedisCluster(masters=3) as servers:
        yield servers


@pytest.fixture
async def cluster(cluster_servers: RedisCluster) -> AsyncIterator[AsyncRedisCluster]:
    """A cluster client on the emptied cluster."""
    client = AsyncRedisCluster.from_url(
        f"redis://127.0.0.1:{cluster_servers.nodes[0].port}/0", decode_responses=True
    )
    await client.flushall(target_nodes=AsyncRedisCluster.PRIMARIES)
    yield client
    await client.aclose()
