"""cdc-postgres's configuration errors: each names the field (or the server object)
and never the password; the ones found on the server come from a real one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import ConfigError, SourceError
from framework.polling import ConnectorConfig, parse_provider_config
from framework.testing import PostgresServer, free_port
from providers.postgres import CdcConfig
from tests.providers.postgres.conftest import Database, cdc_connector, cdc_entry

URL = "postgresql://fleet:s3cret-pw@db.example.org:5432/shop"


def parse(**provider: Any) -> CdcConfig:
    entry = cdc_entry(URL)
    entry["providerConfig"] = provider
    return parse_provider_config(CdcConfig, ConnectorConfig.model_validate(entry))


@pytest.mark.parametrize(("provider", "says"), [
    ({"table": "orders"}, "connectionUrl is required"),
    ({"connectionUrl": URL}, "table or tables is required"),
    ({"connectionUrl": URL, "table": "a", "tables": ["b"]}, "not both"),
    ({"connectionUrl": URL, "table": "Orders; drop"}, "providerConfig.table"),
    ({"connectionUrl": URL, "tables": ["a", "a"]}, "names a table twice"),
    ({"connectionUrl": URL, "tables": ["x.y.z"]}, "providerConfig.tables"),
    ({"connectionUrl": URL, "table": "t", "slot": "Bad-Slot"}, "providerConfig.slot"),
    ({"connectionUrl": URL, "table": "t", "publication": "p x"}, "providerConfig.publication"),
    ({"connectionUrl": URL, "table": "t", "heartbeatIntervalMs": 5},
     "providerConfig.heartbeatIntervalMs"),
    ({"connectionUrl": URL, "table": "t", "maxChangeBytes": 10},
     "providerConfig.maxChangeBytes"),
    ({"connectionUrl": URL, "table": "t", "slots": "x"}, "providerConfig.slots"),
    ({"connectionUrl": "postgresql://u:s3cret-pw@/db", "table": "t"}, "names no host"),
    ({"connectionUrl": "host=h password=s3cret-pw port=notaport x", "table": "t"},
     "providerConfig.connectionUrl"),
])
def test_each_bad_field_is_named_and_the_password_never(provider: dict[str, Any],
                                                        says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(**provider)
    assert says in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)
    assert "cdc-postgres connector orders-cdc" in str(raised.value)


def test_defaults_name_the_slot_and_publication_after_the_connector() -> None:
    settings = parse(connectionUrl=URL, tables=["orders", "sales.lines"])
    assert settings.qualified_tables() == ["public.orders", "sales.lines"]
    assert settings.slot is None and settings.heartbeat_interval_ms == 10_000
    assert "s3cret-pw" not in repr(settings)


async def start_error(redis: Redis, url: str, **provider: Any) -> str:
    connector = await cdc_connector(redis, url, **provider)
    try:
        with pytest.raises(SourceError) as raised:
            await connector.poll()
    finally:
        await connector.aclose()
    message = str(raised.value)
    assert "pg-secret" not in message
    return message


async def test_a_missing_table_is_named(redis: Redis, db: Database) -> None:
    message = await start_error(redis, db.url, table=None, tables=["orders", "ghost"])
    assert f"{db.name} has no table public.ghost" in message


async def test_a_missing_publication_is_an_error_when_it_may_not_be_created(
    redis: Redis, db: Database,
) -> None:
    message = await start_error(redis, db.url, publication="nopub", createPublication=False)
    assert "has no publication nopub (createPublication is false)" in message


async def test_a_publication_without_a_table_is_named(redis: Redis, db: Database) -> None:
    db.sql("CREATE PUBLICATION narrow FOR TABLE other")
    message = await start_error(redis, db.url, publication="narrow")
    assert "publication narrow lacks public.orders" in message


async def test_a_missing_slot_is_an_error_when_it_may_not_be_created(
    redis: Redis, db: Database,
) -> None:
    message = await start_error(redis, db.url, slot="noslot", createSlot=False)
    assert "has no replication slot noslot" in message


async def test_a_slot_of_another_plugin_is_refused(redis: Redis, db: Database) -> None:
    db.sql("SELECT pg_create_logical_replication_slot('textslot', 'test_decoding')")
    message = await start_error(redis, db.url, slot="textslot")
    assert "slot textslot is not a pgoutput slot of this database" in message


async def test_a_wrong_password_fails_clearly_without_printing_it(
    redis: Redis, db: Database,
) -> None:
    url = db.url.replace(db.server.password, "wrong-pw-77")
    message = await start_error(redis, url)
    assert "failed connect" in message and "password authentication failed" in message
    assert "wrong-pw-77" not in message


async def test_a_server_that_is_not_there_is_a_clear_error_naming_it(redis: Redis) -> None:
    url = f"postgresql://fleet:pg-secret@127.0.0.1:{free_port()}/fleet"
    message = await start_error(redis, url)
    assert "failed connect" in message and "127.0.0.1" in message


@pytest.fixture(scope="module")
def replica_level() -> Iterator[PostgresServer]:
    with PostgresServer(wal_level="replica") as server:
        yield server


@pytest.mark.slow
async def test_a_server_without_logical_decoding_is_told_so(
    redis: Redis, replica_level: PostgresServer,
) -> None:
    message = await start_error(redis, replica_level.url)
    assert "has wal_level=replica; logical decoding needs wal_level=logical" in message
