"""A private PostgreSQL (wal_level=logical) per test session, a fresh database per
test, and connectors built on the real Redis."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig
from framework.testing import PostgresServer
from providers.postgres import CdcConfig, CdcSource, create_cdc_connector
from providers.postgres.session import Capture
from tests.providers.push_rig import leased_context

STREAM = "raw-input-signals"
_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@dataclass
class Database:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url.rsplit("/", 1)[0] + f"/{self.name}"

    def sql(self, command: str, *params: Any) -> list[Any]:
        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(command, params or None)
            return cursor.fetchall() if cursor.description else []

    def slot_lsn(self, slot: str) -> str:
        rows = self.sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                        "WHERE slot_name = %s", slot)
        return str(rows[0][0])


@pytest.fixture
def db(pg: PostgresServer) -> Iterator[Database]:
    name = f"cdc_{os.getpid()}_{next(_numbers)}"
    pg.psql("postgres", f"CREATE DATABASE {name} OWNER {pg.user}")
    database = Database(pg, name)
    database.sql("CREATE TABLE orders (id int PRIMARY KEY, item text, qty int, "
                 "price numeric(10,2), paid bool, note jsonb, at timestamptz, ratio float8)")
    database.sql("CREATE TABLE other (id serial PRIMARY KEY, v text)")
    yield database
    pg.psql(name, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                  f"WHERE database = '{name}'")
    pg.psql("postgres", f"DROP DATABASE {name} WITH (FORCE)")


def cdc_entry(url: str, name: str = "orders-cdc", *, request_timeout_ms: int = 10_000,
              **provider: Any) -> dict[str, Any]:
    return {"name": name, "type": "cdc-postgres", "pollIntervalMs": 50,
            "requestTimeoutMs": request_timeout_ms, "leaseTtlSeconds": 2,
            "providerConfig": {"connectionUrl": url, "table": "orders", **provider}}


async def cdc_connector(redis: Redis, url: str, name: str = "orders-cdc", *,
                        request_timeout_ms: int = 10_000, **provider: Any) -> Any:
    config = ConnectorConfig.model_validate(
        cdc_entry(url, name, request_timeout_ms=request_timeout_ms, **provider))
    return create_cdc_connector(config, await leased_context(redis, config))


def cdc_source(url: str, name: str = "orders-cdc", **provider: Any) -> CdcSource:
    """The source alone, to drive start / receive / acknowledge / stop step by step."""
    config = ConnectorConfig.model_validate(cdc_entry(url, name, **provider))
    settings = CdcConfig.model_validate(config.provider_config)
    capture = Capture(url=url, slot=f"fleet_{name.replace('-', '_')}",
                      publication=f"fleet_{name.replace('-', '_')}",
                      tables=tuple(settings.qualified_tables()), create_slot=True,
                      create_publication=True, max_change_bytes=settings.max_change_bytes)
    return CdcSource(config, settings, capture, SystemClock(), get_logger(connector=name))
