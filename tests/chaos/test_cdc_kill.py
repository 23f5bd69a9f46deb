"""cdc-postgres under kill -9: a real ``connector-run`` process reading a real
PostgreSQL during an INSERT storm is killed again and again, anywhere in its work
(peeking, appending, confirming the slot). Every row inserted must be in the
stream exactly once, in commit order."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
import redis as sync_redis

from framework.testing import PostgresServer, RedisServer
from tests.process import ConnectorProcess, write_config
from tests.providers.postgres.conftest import cdc_entry

STREAM = "raw-input-signals"
NAME = "orders-cdc"


class InsertStorm:
    """Inserts ids 1, 2, ... in transactions of 1 to 20 rows until stopped."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InsertStorm:
        self._thread.start()
        return self

    def _run(self) -> None:
        chance = random.Random(3)
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                count = chance.randint(1, 20)
                conn.execute("INSERT INTO orders (id) SELECT generate_series(%s::int, %s::int)",
                             (self.last + 1, self.last + count))
                self.last += count
                time.sleep(chance.uniform(0.0, 0.01))

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def streamed_ids(client: sync_redis.Redis) -> list[int]:
    return [orjson.loads(fields["payload"])["value"]["after"]["id"]
            for _, fields in client.xrange(STREAM)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_during_an_insert_storm_loses_and_repeats_no_row(
    pg: PostgresServer, redis_server: RedisServer, tmp_path: Path,
) -> None:
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    config = write_config(tmp_path / "connectors.json", cdc_entry(pg.url, NAME))
    chance = random.Random(17)
    # The first run creates the slot: rows before it are not captured.
    first = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                             log=tmp_path / "run-first.log")
    first.wait_for("push_source_started", timeout_s=60)
    first.signal(signal.SIGKILL)
    first.close()
    client.delete(f"lease:{NAME}")
    with InsertStorm(pg.url) as storm:
        for number in range(6):
            process = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                       log=tmp_path / f"run-{number}.log")
            process.wait_for("lease_acquired", timeout_s=60)
            time.sleep(chance.uniform(0.3, 1.5))
            process.signal(signal.SIGKILL)
            process.close()
            client.delete(f"lease:{NAME}")  # its TTL would free it; no need to wait
    last = storm.last
    final = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                             log=tmp_path / "run-final.log")
    deadline = time.monotonic() + 90
    while client.xlen(STREAM) < last and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # anything beyond ``last`` would be a duplicate: let it show
    final.signal(signal.SIGTERM)
    final.wait()
    final.close()

    ids = streamed_ids(client)
    assert last > 200, f"the storm inserted only {last} rows"
    assert len(ids) == len(set(ids)), "a row was appended twice"
    assert ids == list(range(1, last + 1))
    client.close()
