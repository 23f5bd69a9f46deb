"""The audit chain on a real Redis: appends, verification, tampering, concurrency."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.connections import create_redis
from framework.core.keys import AUDIT_STREAM
from framework.testing import RedisServer
from framework.trust.audit.chain import GENESIS_HASH, AuditChain, canonical_body, record_hash
from framework.trust.catalog.signing import PrivateKey, TrustStore
from tests.conftest import REPO_ROOT

Entry = tuple[str, dict[str, str]]


async def _fill(chain: AuditChain, count: int) -> None:
    for n in range(count):
        await chain.append("executed", {"capability": "valve_control", "n": n,
                                        "params": {"valveId": "V-01", "position": "CLOSED"}})


async def _rewrite(redis: Redis, change: Callable[[list[Entry]], list[Entry]]) -> None:
    """Rewrite the stream as a tamperer with write access would (same entry ids)."""
    entries: list[Entry] = await redis.xrange(AUDIT_STREAM)
    await redis.delete(AUDIT_STREAM)
    for entry_id, fields in change(entries):
        await redis.xadd(AUDIT_STREAM, fields, id=entry_id)


def _edit_body(fields: dict[str, str], **updates: Any) -> dict[str, str]:
    body = orjson.loads(fields["body"])
    body.update(updates)
    return {**fields, "body": canonical_body(body).decode()}


async def test_a_clean_chain_verifies_and_links_every_record(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 5)
    records = [r async for r in chain.records()]
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].body["prev"] == GENESIS_HASH
    assert all(b.body["prev"] == a.hash for a, b in zip(records, records[1:], strict=False))
    report = await chain.verify()
    assert report.ok, report.broken
    assert (report.records, report.head_hash) == (5, records[-1].hash)


async def test_an_empty_chain_verifies(redis: Redis) -> None:
    report = await AuditChain(redis).verify()
    assert report.ok and report.records == 0


async def test_an_edited_record_is_pinpointed(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 5)
    edited_id = (await redis.xrange(AUDIT_STREAM))[2][0]
    await _rewrite(redis, lambda entries: [
        (i, _edit_body(f, params={"valveId": "V-01", "position": "OPEN"}) if i == edited_id
         else f) for i, f in entries])
    report = await chain.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.entry_id) == (3, edited_id)
    assert "does not match its hash" in report.broken.problem
    assert report.records == 2  # the two records before it are fine


async def test_a_record_rewritten_with_its_hash_breaks_the_next_link(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 5)

    def forge(entries: list[Entry]) -> list[Entry]:
        forged = _edit_body(entries[2][1], n=99)
        forged["hash"] = record_hash(forged["body"].encode())
        return [*entries[:2], (entries[2][0], forged), *entries[3:]]

    await _rewrite(redis, forge)
    report = await chain.verify()
    assert report.broken is not None and report.broken.seq == 4
    assert "record 3 was changed" in report.broken.problem


async def test_a_removed_record_and_a_truncated_tail_are_reported(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 5)
    entries: list[Entry] = await redis.xrange(AUDIT_STREAM)
    await redis.xdel(AUDIT_STREAM, entries[1][0])
    report = await chain.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.entry_id) == (3, entries[2][0])
    assert "seq is 3, expected 2" in report.broken.problem

    await redis.delete(AUDIT_STREAM)
    for entry_id, fields in entries[:4]:
        await redis.xadd(AUDIT_STREAM, fields, id=entry_id)
    report = await chain.verify()
    assert report.broken is not None
    assert "head" in report.broken.problem and "says seq 5" in report.broken.problem


async def test_signed_records_verify_only_against_trusted_keys(redis: Redis) -> None:
    key, stranger = PrivateKey.generate(), PrivateKey.generate()
    await _fill(AuditChain(redis, signing_key=key), 2)
    await _fill(AuditChain(redis, signing_key=stranger), 1)
    report = await AuditChain(redis).verify(TrustStore([key.public()]))
    assert report.broken is not None and report.broken.seq == 3
    assert "not a trusted key" in report.broken.problem
    assert report.signed == 2

    trusted_both = TrustStore([key.public(), stranger.public()])
    assert (await AuditChain(redis).verify(trusted_both)).ok


async def test_unsigned_records_fail_when_signatures_are_required(redis: Redis) -> None:
    await _fill(AuditChain(redis), 1)
    trust = TrustStore([PrivateKey.generate().public()])
    assert (await AuditChain(redis).verify(trust)).ok
    report = await AuditChain(redis).verify(trust, require_signatures=True)
    assert report.broken is not None and report.broken.problem == "the record is not signed"


async def test_concurrent_appenders_keep_one_valid_chain(
    redis: Redis, redis_server: RedisServer
) -> None:
    # Separate clients and chains: writers that only the Lua compare-and-append orders.
    clients = [create_redis(redis_server.url) for _ in range(4)]
    chains = [AuditChain(client) for client in clients]

    async def write(writer: int, chain: AuditChain) -> None:
        for n in range(15):
            await chain.append("executed", {"capability": "valve_control",
                                            "writer": writer, "n": n})

    try:
        await asyncio.gather(*(write(w, chains[w % 4]) for w in range(12)))
    finally:
        for client in clients:
            await client.aclose()
    report = await AuditChain(redis).verify()
    assert report.ok, report.broken
    assert report.records == 12 * 15
    written = [(r.body["writer"], r.body["n"]) async for r in AuditChain(redis).records()]
    assert sorted(written) == [(w, n) for w in range(12) for n in range(15)]


_APPENDER = """
import asyncio, sys
from framework.trust.audit.chain import AuditChain
from framework.core.connections import create_redis

async def main() -> None:
    redis = create_redis(sys.argv[1])
    chain = AuditChain(redis)
    for n in range(40):
        await chain.append("executed", {"capability": "valve_control",
                                        "process": sys.argv[2], "n": n})
    await redis.aclose()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_appenders_in_several_processes_keep_one_valid_chain(
    redis: Redis, redis_server: RedisServer
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _APPENDER, redis_server.url, str(p), cwd=REPO_ROOT)
        for p in range(3)
    ]
    codes = await asyncio.gather(*(p.wait() for p in processes))
    assert codes == [0, 0, 0]
    report = await AuditChain(redis).verify()
    assert report.ok, report.broken
    assert report.records == 120


async def test_records_filter_by_capability_kind_and_time(redis: Redis) -> None:
    chain = AuditChain(redis)
    await chain.append("executed", {"capability": "valve_control"})
    first_ms = int((await redis.xrange(AUDIT_STREAM))[0][0].split("-")[0])
    await asyncio.sleep(0.01)
    await chain.append("refused", {"capability": "pump_control"})
    await chain.append("precondition_failed", {"capability": "valve_control"})
    kinds = [r.kind async for r in chain.records(capability="valve_control")]
    assert kinds == ["executed", "precondition_failed"]
    assert [r.kind async for r in chain.records(kind="refused")] == ["refused"]
    later = [r.seq async for r in chain.records(since_ms=first_ms + 1)]
    assert later == [2, 3]


async def test_values_that_are_not_json_are_recorded_as_text(redis: Redis) -> None:
    chain = AuditChain(redis)
    record = await chain.append("executed", {"capability": "x", "result": {1: b"\x00"},
                                             "detail": ValueError("boom")})
    assert record.body["detail"] == "boom"
    assert (await chain.verify()).ok


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]"])
async def test_a_body_that_is_not_an_object_is_reported(redis: Redis, garbage: str) -> None:
    await _fill(AuditChain(redis), 1)
    entry_id = await redis.xadd(AUDIT_STREAM, {"body": garbage, "hash": "0"})
    report = await AuditChain(redis).verify()
    assert report.broken is not None and report.broken.entry_id == entry_id
