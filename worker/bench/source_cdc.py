"""``bench sources --source cdc``: rows/s from a private PostgreSQL into the stream,
through ``cdc-postgres`` (lease, peek, decode, events, fenced append with the LSN,
slot confirmed after it) against a bare psycopg loop doing the same reads plus
XADD without the framework (peek 500 changes, one pipelined XADD of each change's
raw pgoutput bytes, advance the slot).

Two rows: ``backlog`` drains ``events`` rows inserted before the reader starts
(the reader's capacity); ``storm`` reads while a thread inserts ``events`` rows in
transactions of 100, and gives the end-to-end lag p99 (commit time to stream
entry time) of both loops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import orjson
import psycopg
from redis.asyncio import Redis

from framework.core import create_redis
from framework.polling import ConnectorConfig
from framework.testing import PostgresServer
from providers.postgres import create_cdc_connector
from worker.bench.leased import fresh_connector_context
from worker.bench.stats import Row

STREAM = "raw-input-signals"
PEEK = 500
TXN_ROWS = 100
DEADLINE_S = 600.0  # a loop that stops making progress fails its run instead of hanging
_PG_EPOCH_S = datetime(2000, 1, 1, tzinfo=UTC).timestamp()


def measure(params: Row) -> list[Row]:
    """One run: a ``backlog`` and a ``storm`` row, each with ``rate`` and ``bare_rate``
    (rows/s); the storm also with ``lag_p99_ms`` and ``bare_lag_p99_ms``."""
    return asyncio.run(_measure(int(params["events"]), params["redis_url"]))


async def _measure(events: int, redis_url: str) -> list[Row]:
    with PostgresServer() as pg:
        redis = create_redis(redis_url)
        try:
            rows = []
            for mode in ("backlog", "storm"):
                connector = await _run(redis, pg, events, mode, bare=False)
                bare = await _run(redis, pg, events, mode, bare=True)
                row: Row = {"mode": mode, "events": events, "rate": connector[0],
                            "bare_rate": bare[0]}
                if mode == "storm":
                    row |= {"lag_p99_ms": connector[1], "bare_lag_p99_ms": bare[1]}
                rows.append(row)
        finally:
            await redis.aclose()
    return rows


def _insert(url: str, table: str, first: int, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for start in range(first, first + count, TXN_ROWS):
            conn.execute(f"INSERT INTO {table} (id, item, qty) SELECT n, 'item ' || n, n %% 7 "
                         "FROM generate_series(%s::int, %s::int) n",
                         (start, min(start + TXN_ROWS, first + count) - 1))


async def _run(redis: Redis, pg: PostgresServer, events: int, mode: str, *,
               bare: bool) -> tuple[float, float]:
    """(rows/s, lag p99 ms) of one loop over a fresh table and slot."""
    table = f"{mode}_{'bare' if bare else 'connector'}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, item text, qty int)")
        conn.execute(f"CREATE PUBLICATION {table} FOR TABLE {table}")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (table,))
    await redis.delete(STREAM)
    storm = threading.Thread(target=_insert, args=(pg.url, table, 1, events))
    if mode == "backlog":
        _insert(pg.url, table, 1, events)
    started = time.perf_counter()
    if mode == "storm":
        storm.start()
    try:
        if bare:
            lags = await _drain_bare(redis, pg.url, table, events)
        else:
            await _drain_connector(redis, pg.url, table, events)
            lags = await _stream_lags(redis)
    finally:
        if mode == "storm":
            await asyncio.to_thread(storm.join)
    rate = events / (time.perf_counter() - started)
    lags.sort()
    return rate, lags[int(len(lags) * 0.99)] if lags else 0.0


async def _drain_connector(redis: Redis, url: str, table: str, events: int) -> None:
    config = ConnectorConfig(
        name=f"bench-{table}", type="cdc-postgres", poll_interval_ms=20,
        request_timeout_ms=30_000,
        provider_config={"connectionUrl": url, "table": table, "slot": table,
                         "publication": table})
    context = await fresh_connector_context(redis, config)
    reader = create_cdc_connector(config, context)
    try:
        async with asyncio.timeout(DEADLINE_S):
            while await redis.xlen(STREAM) < events:
                await reader.poll()
    finally:
        await reader.aclose()


async def _stream_lags(redis: Redis) -> list[float]:
    """Each event's stream entry time minus its commit time, in ms."""
    lags = []
    for entry_id, fields in await redis.xrange(STREAM) or []:
        appended_ms = int(str(entry_id).split("-")[0])
        payload = (fields or {})["payload"]
        committed = datetime.fromisoformat(orjson.loads(payload)["timestamp"])
        lags.append(appended_ms - committed.timestamp() * 1000)
    return lags


async def _drain_bare(redis: Redis, url: str, table: str, events: int) -> list[float]:
    lags: list[float] = []
    async with (await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
                asyncio.timeout(DEADLINE_S)):
        while len(lags) < events:
            cursor = await conn.execute(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes("
                "%s, NULL, %s, 'proto_version', '1', 'publication_names', %s)",
                (table, PEEK, table), binary=True)
            rows = await cursor.fetchall()
            if not rows:
                await asyncio.sleep(0.02)
                continue
            committed_s, commits = 0.0, []
            async with redis.pipeline(transaction=False) as pipe:
                for _lsn, data in rows:
                    kind = data[:1]
                    if kind == b"B":
                        micros = int.from_bytes(data[9:17], "big", signed=True)
                        committed_s = _PG_EPOCH_S + micros / 1e6
                    elif kind in (b"I", b"U", b"D"):
                        pipe.xadd(STREAM, {"payload": bytes(data)})
                        commits.append(committed_s)
                await pipe.execute()
            now_ms = time.time() * 1000
            lags += [now_ms - c * 1000 for c in commits]
            await conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                               (table, rows[-1][0]))
    return lags
