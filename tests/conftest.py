"""Shared fixtures: a private redis-server per test session (flushed per test),
a replay HTTP server, and helpers to build connectors on real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.core.connections import create_redis
from framework.core.logs import configure_logging
from framework.testing import RabbitMqServer, RedisServer, ReplayServer
from framework.trust.catalog.signing import PrivateKey

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).parent.parent

configure_logging("DEBUG")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMqServer]:
    """A private RabbitMQ node (~10 s to start: one per session; tests use their own
    queue names)."""
    with RabbitMqServer() as node:
        yield node


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = create_redis(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def sync(redis_server: RedisServer) -> Iterator[sync_redis.Redis]:
    """A blocking client on the flushed test Redis, for tests that drive processes."""
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def old_key() -> PrivateKey:
    """A signing key being rotated out (tests of key rotation)."""
    return PrivateKey.generate()


@pytest.fixture
def new_key() -> PrivateKey:
    """The signing key rotated in."""
    return PrivateKey.generate()
