"""The http-webhook receiver when Redis goes away: every request is answered 503
(never 2xx for data it did not keep, never a hang), and once Redis is back the
senders' retries land, each event once, and every 2xx given is in the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from framework.core import create_redis
from framework.testing import RedisServer
from tests.providers.webhook_harness import post, running_webhook, stream_events, webhook_config

pytestmark = pytest.mark.slow

KEYS = {"mode": "bearer", "secrets": {"sender": "token-0123456789"}}
AUTH = {"Authorization": "Bearer token-0123456789"}


@pytest.fixture(scope="module")
def durable_server() -> Iterator[RedisServer]:
    # fsync on every write: what Redis acknowledged survives its kill -9.
    with RedisServer(persistence=True) as server:
        yield server


@pytest.fixture
async def durable(durable_server: RedisServer) -> AsyncIterator[Redis]:
    client = create_redis(durable_server.url)
    await client.flushall()
    yield client
    await client.aclose()


async def send(session: aiohttp.ClientSession, url: str, key: str) -> int:
    status, _, _ = await post(session, url, orjson.dumps({"key": key}),
                              {**AUTH, "Idempotency-Key": key})
    return status


async def retry_until_saved(session: aiohttp.ClientSession, url: str, key: str) -> None:
    """What a webhook sender does with a 503: try again later."""
    async with asyncio.timeout(60):
        for _ in range(300):
            if await send(session, url, key) == 200:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{key} was never saved")


async def test_redis_down_answers_503_then_nothing_is_lost_once_it_is_back(
    durable: Redis, durable_server: RedisServer,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "requestTimeoutMs": 3000})
    async with running_webhook(durable, config) as hook, aiohttp.ClientSession() as session:
        assert [await send(session, hook.url, f"k{i}") for i in range(5)] == [200] * 5

        durable_server.stop()
        async with asyncio.timeout(30):  # each answer comes within its deadline
            down = await asyncio.gather(*(send(session, hook.url, f"k{i}")
                                          for i in range(5, 10)))
        assert down == [503] * 5

        durable_server.start()
        # Every sender retries everything it was not sure of, and more.
        await asyncio.gather(*(retry_until_saved(session, hook.url, f"k{i}")
                               for i in range(10)))

    keys = [entry["payload"]["value"]["key"] for entry in await stream_events(durable)]
    assert sorted(keys) == sorted(f"k{i}" for i in range(10))  # each once


async def test_a_2xx_given_while_redis_is_killed_mid_flow_is_always_in_the_stream(
    durable: Redis, durable_server: RedisServer,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "requestTimeoutMs": 2000})
    saved: list[str] = []
    refused: list[str] = []
    async with running_webhook(durable, config) as hook, aiohttp.ClientSession() as session:

        async def sender(name: str) -> None:
            for n in range(200):
                key = f"{name}-{n}"
                try:
                    status = await send(session, hook.url, key)
                except aiohttp.ClientError:
                    status = 0
                (saved if status == 200 else refused).append(key)
                await asyncio.sleep(0.005)

        senders = [asyncio.create_task(sender(f"s{i}")) for i in range(4)]
        await asyncio.sleep(0.5)
        durable_server.stop()  # kill -9 while requests are being committed
        await asyncio.sleep(1.0)
        durable_server.start()
        await asyncio.gather(*senders)

    in_stream = {entry["payload"]["value"]["key"] for entry in await stream_events(durable)}
    assert saved and refused, "the kill did not fall among the requests"
    assert set(saved) <= in_stream


async def test_a_redis_out_of_memory_answers_503_not_500_then_recovers(
    durable: Redis,
) -> None:
    config = webhook_config("hooks", {"auth": KEYS, "rateLimit": {"requests": 100}})
    async with running_webhook(durable, config) as hook, aiohttp.ClientSession() as session:
        assert await send(session, hook.url, "before") == 200
        await durable.config_set("maxmemory", "1")  # every write is refused: OOM
        try:
            full = [await send(session, hook.url, f"full-{i}") for i in range(3)]
        finally:
            await durable.config_set("maxmemory", "0")
        await retry_until_saved(session, hook.url, "after")

    assert full == [503] * 3
    keys = [entry["payload"]["value"]["key"] for entry in await stream_events(durable)]
    assert keys == ["before", "after"]
