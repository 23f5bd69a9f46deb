"""cdc-postgres against a private PostgreSQL and a real Redis: inserts, updates and
deletes as events with their types mapped, before/after by replica identity, a
restart resuming after the saved LSN, a crash between the append and the slot
confirmation, a transaction bigger than a batch, oversized rows and idle slots."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import structlog
from redis.asyncio import Redis

from framework.core import SourceError
from providers.postgres.lsn import parse_lsn
from providers.postgres.session import PgSession
from tests.providers.postgres.conftest import STREAM, Database, cdc_connector, cdc_source

SLOT = "fleet_orders_cdc"


async def events(redis: Redis) -> list[dict[str, Any]]:
    return [orjson.loads(f["payload"]) for _, f in await redis.xrange(STREAM)]


async def windows_until(connector: Any, redis: Redis, count: int, limit: int = 40) -> None:
    for _ in range(limit):
        await connector.poll()
        if await redis.xlen(STREAM) >= count:
            return
    raise AssertionError(f"{count} events expected, got {await redis.xlen(STREAM)}")


async def test_inserts_updates_and_deletes_become_events_with_mapped_types(
    redis: Redis, db: Database,
) -> None:
    connector = await cdc_connector(redis, db.url)
    await connector.poll()  # creates the publication and the slot
    db.sql("INSERT INTO orders VALUES (1, 'bolt', 3, 12.50, true, '{\"a\": [1]}', "
           "'2026-01-02 03:04:05+00', 'NaN'), (2, NULL, NULL, NULL, NULL, NULL, NULL, 0.25)")
    db.sql("UPDATE orders SET qty = 4 WHERE id = 1")
    db.sql("DELETE FROM orders WHERE id = 2")
    db.sql("ALTER TABLE orders REPLICA IDENTITY FULL")
    db.sql("UPDATE orders SET qty = 5 WHERE id = 1")
    db.sql("DELETE FROM orders WHERE id = 1")

    await windows_until(connector, redis, 6)

    found = await events(redis)
    assert [(e["value"]["op"], e["value"]["identity"]) for e in found] == [
        ("insert", "default"), ("insert", "default"), ("update", "default"),
        ("delete", "default"), ("update", "full"), ("delete", "full")]
    first = found[0]["value"]
    assert first["after"] == {"id": 1, "item": "bolt", "qty": 3, "price": "12.50",
                              "paid": True, "note": {"a": [1]},
                              "at": "2026-01-02 03:04:05+00", "ratio": "NaN"}
    assert first["before"] is None and first["table"] == "public.orders"
    assert first["key"] == ["id"]
    assert found[1]["value"]["after"]["item"] is None
    assert found[1]["value"]["after"]["ratio"] == 0.25
    # Default identity: an update carries no old row, a delete only the key.
    assert found[2]["value"]["before"] is None and found[2]["value"]["after"]["qty"] == 4
    assert found[3]["value"]["before"] == {"id": 2} and found[3]["value"]["after"] is None
    # FULL: before and after, whole rows.
    assert found[4]["value"]["before"]["qty"] == 4 and found[4]["value"]["after"]["qty"] == 5
    assert found[5]["value"]["before"]["item"] == "bolt"
    assert found[0]["nodeId"].endswith(f"/{db.name}/public.orders")
    assert found[0]["metadata"]["commitLsn"] == found[1]["metadata"]["commitLsn"]
    assert found[0]["timestamp"].startswith("20")
    cursors = orjson.loads((await redis.hgetall("connector:state:orders-cdc"))["cursors"])
    assert cursors["lsn"] == found[-1]["metadata"]["commitLsn"] == db.slot_lsn(SLOT)
    await connector.aclose()


async def test_only_the_configured_tables_are_published(redis: Redis, db: Database) -> None:
    db.sql("CREATE PUBLICATION wide FOR TABLE orders, other")
    connector = await cdc_connector(redis, db.url, publication="wide")
    await connector.poll()
    db.sql("BEGIN; INSERT INTO other (v) VALUES ('x'); "
           "INSERT INTO orders (id) VALUES (7); INSERT INTO other (v) VALUES ('y'); COMMIT")
    before_z = parse_lsn(db.sql("SELECT pg_current_wal_lsn()::text")[0][0])
    db.sql("INSERT INTO other (v) VALUES ('z')")
    await windows_until(connector, redis, 1)
    await connector.poll()

    assert [e["value"]["after"]["id"] for e in await events(redis)] == [7]
    # The slot moved past the transaction of only the other table too.
    assert parse_lsn(db.slot_lsn(SLOT)) > before_z
    await connector.aclose()


async def test_a_restart_resumes_after_the_saved_lsn(redis: Redis, db: Database) -> None:
    first = await cdc_connector(redis, db.url)
    await first.poll()
    db.sql("INSERT INTO orders (id) VALUES (1), (2)")
    await windows_until(first, redis, 2)
    await first.aclose()
    db.sql("INSERT INTO orders (id) VALUES (3)")

    second = await cdc_connector(redis, db.url)
    await windows_until(second, redis, 3)
    await second.poll()

    assert [e["value"]["after"]["id"] for e in await events(redis)] == [1, 2, 3]
    await second.aclose()


async def test_a_crash_after_the_append_before_the_slot_moved_repeats_nothing(
    redis: Redis, db: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await cdc_connector(redis, db.url)
    await first.poll()
    slot_before = db.slot_lsn(SLOT)
    db.sql("INSERT INTO orders (id) VALUES (1), (2)")

    async def dies(self: PgSession, lsn: int) -> None:
        raise SourceError("the process died here")

    with monkeypatch.context() as patch:  # the slot confirmation never happens
        patch.setattr(PgSession, "advance", dies)
        with pytest.raises(SourceError, match="died here"):
            for _ in range(40):  # appended; then the next peek must first move the slot
                await first.poll()
        await first.aclose()
    assert await redis.xlen(STREAM) == 2
    assert db.slot_lsn(SLOT) == slot_before  # the server would give both rows again

    db.sql("INSERT INTO orders (id) VALUES (3)")
    second = await cdc_connector(redis, db.url)
    await windows_until(second, redis, 3)
    await second.poll()

    assert [e["value"]["after"]["id"] for e in await events(redis)] == [1, 2, 3]
    await second.aclose()


async def test_a_transaction_bigger_than_a_batch_is_split_and_resumed_inside(
    redis: Redis, db: Database,
) -> None:
    source = cdc_source(db.url)  # driven step by step, as the push connector does
    await source.start({})  # creates the publication and the slot
    await source.stop()
    db.sql("INSERT INTO orders (id) SELECT generate_series(1, 1200)")
    db.sql("INSERT INTO orders (id) VALUES (5000)")

    seen: list[int] = []
    await source.start({})
    batch = await source.receive(500, 1.0)
    seen += [int(row.change.new[0]) for row in batch.messages]
    assert batch.positions["partial"].endswith(":500")
    await source.acknowledge(batch)  # a partial batch leaves the slot where it was
    await source.stop()  # a crash: the next start resumes inside the transaction
    await source.start(batch.positions)
    while len(seen) < 1201:
        batch = await source.receive(500, 1.0)
        seen += [int(row.change.new[0]) for row in batch.messages]
        await source.acknowledge(batch)
    await source.stop()

    assert seen == [*range(1, 1201), 5000]


async def test_a_row_over_max_change_bytes_is_rejected_by_name_and_the_rest_flow(
    redis: Redis, db: Database,
) -> None:
    connector = await cdc_connector(redis, db.url, maxChangeBytes=2048)
    await connector.poll()
    db.sql("INSERT INTO orders (id, item) VALUES (1, 'small'), (2, repeat('x', 5000)), "
           "(3, 'small')")

    await windows_until(connector, redis, 2)

    assert [e["value"]["after"]["id"] for e in await events(redis)] == [1, 3]
    [(_, rejected)] = await redis.xrange("connector:state:orders-cdc:rejected")
    assert "insert on public.orders" in rejected["error"]
    assert "over maxChangeBytes" in rejected["error"]
    await connector.aclose()


async def test_an_idle_slot_is_moved_on_by_the_heartbeat(redis: Redis, db: Database) -> None:
    connector = await cdc_connector(redis, db.url, heartbeatIntervalMs=100)
    await connector.poll()
    start = parse_lsn(db.slot_lsn(SLOT))
    for n in range(20):  # WAL grows, but not from the captured table
        db.sql("INSERT INTO other (v) VALUES (%s)", f"busy {n}")
    written = parse_lsn(db.sql("SELECT pg_current_wal_flush_lsn()::text")[0][0])

    for _ in range(10):
        await connector.poll()
        if parse_lsn(db.slot_lsn(SLOT)) >= written:
            break

    assert parse_lsn(db.slot_lsn(SLOT)) >= written > start
    assert await redis.xlen(STREAM) == 0
    cursors = orjson.loads((await redis.hgetall("connector:state:orders-cdc"))["cursors"])
    assert parse_lsn(cursors["lsn"]) >= written
    await connector.aclose()


async def test_more_types_truncates_and_untouched_toasted_values(
    redis: Redis, db: Database,
) -> None:
    db.sql("CREATE TABLE kinds (id bigint PRIMARY KEY, b bytea, tags int[], u uuid, "
           "d interval, day date, big text, r real)")
    connector = await cdc_connector(redis, db.url, table="kinds")
    await connector.poll()
    db.sql("INSERT INTO kinds VALUES (9007199254740993, '\\x0102ff', '{1,2,3}', "
           "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00', '2026-03-04', "
           "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i), "
           "'-Infinity')")
    db.sql("UPDATE kinds SET r = 1.5")  # big is TOASTed and untouched: not sent
    db.sql("TRUNCATE kinds")

    await windows_until(connector, redis, 3)

    inserted, updated, truncated = (e["value"] for e in await events(redis))
    after = inserted["after"]
    assert after["id"] == 9007199254740993  # bigint stays exact
    assert (after["b"], after["tags"], after["u"]) == (
        "\\x0102ff", "{1,2,3}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert (after["d"], after["day"], after["r"]) == ("1 day 02:00:00", "2026-03-04",
                                                      "-Infinity")
    assert len(after["big"]) == 400 * 32
    assert updated["unchangedColumns"] == ["big"] and "big" not in updated["after"]
    assert updated["after"]["r"] == 1.5
    assert truncated == {"op": "truncate", "table": "public.kinds", "before": None,
                         "after": None, "key": ["id"], "identity": "default"}
    await connector.aclose()


async def test_a_slot_recreated_behind_the_connectors_back_is_reported(
    redis: Redis, db: Database,
) -> None:
    first = await cdc_connector(redis, db.url)
    await first.poll()
    db.sql("INSERT INTO orders (id) VALUES (1)")
    await windows_until(first, redis, 1)
    await first.aclose()
    db.sql("SELECT pg_drop_replication_slot(%s)", SLOT)
    db.sql("INSERT INTO orders (id) VALUES (2)")  # while there is no slot: not captured

    with structlog.testing.capture_logs() as logs:
        second = await cdc_connector(redis, db.url)
        await second.poll()
    db.sql("INSERT INTO orders (id) VALUES (3)")
    await windows_until(second, redis, 2)

    assert [e["value"]["after"]["id"] for e in await events(redis)] == [1, 3]
    assert "cdc_slot_ahead_of_saved_position" in [log["event"] for log in logs]
    await second.aclose()
