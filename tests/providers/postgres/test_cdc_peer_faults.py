"""cdc-postgres when PostgreSQL misbehaves: it goes away and comes back (nothing
lost, nothing twice), or it accepts the connection and never answers (a clear
error within requestTimeoutMs)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import SourceError
from framework.testing import PostgresServer
from tests.providers.postgres.conftest import STREAM, Database, cdc_connector


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


async def ids(redis: Redis) -> list[int]:
    return [orjson.loads(f["payload"])["value"]["after"]["id"]
            for _, f in await redis.xrange(STREAM)]


async def polls_until(connector: Any, redis: Redis, count: int) -> list[str]:
    """Windows until ``count`` events; the errors met on the way."""
    errors: list[str] = []
    for _ in range(60):
        try:
            await connector.poll()
        except SourceError as exc:
            errors.append(str(exc))
            await asyncio.sleep(0.1)
        if await redis.xlen(STREAM) >= count:
            return errors
    raise AssertionError(f"{count} events expected, got {await ids(redis)}; {errors[-3:]}")


@pytest.mark.slow
async def test_postgres_going_away_and_coming_back_loses_and_repeats_nothing(
    redis: Redis, own_pg: PostgresServer,
) -> None:
    db = Database(own_pg, "fleet")
    db.sql("CREATE TABLE orders (id int PRIMARY KEY)")
    connector = await cdc_connector(redis, db.url)
    await connector.poll()
    db.sql("INSERT INTO orders SELECT generate_series(1, 3)")
    await polls_until(connector, redis, 3)

    own_pg.stop()
    with pytest.raises(SourceError) as gone:
        for _ in range(5):
            await connector.poll()
    assert f"127.0.0.1:{own_pg.port}/fleet" in str(gone.value)
    assert own_pg.password not in str(gone.value)

    own_pg.start()
    db.sql("INSERT INTO orders SELECT generate_series(4, 6)")
    errors = await polls_until(connector, redis, 6)
    await connector.poll()

    assert await ids(redis) == [1, 2, 3, 4, 5, 6]
    assert all(own_pg.password not in error for error in errors)
    await connector.aclose()


class SilentServer:
    """Accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


async def test_a_server_that_never_answers_fails_within_the_deadline(redis: Redis) -> None:
    silent = SilentServer()
    url = f"postgresql://fleet:pg-secret-silent@127.0.0.1:{silent.port}/fleet"
    connector = await cdc_connector(redis, url, request_timeout_ms=1000)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(SourceError) as raised:
            await connector.poll()
        took_s = asyncio.get_running_loop().time() - started
    finally:
        await connector.aclose()
        silent.close()
    assert "did not finish connect within requestTimeoutMs" in str(raised.value)
    assert "pg-secret-silent" not in str(raised.value)
    assert took_s < 1.0 + 2.0
