"""Exporting and trimming the audit chain on a real Redis: the checkpoint, verification
from it, tampering with it, trims racing appends, and archive files joined to the chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.connections import create_redis
from framework.core.errors import AuditTrimError
from framework.core.keys import AUDIT_CHECKPOINT_KEY, AUDIT_HEAD_KEY, AUDIT_STREAM
from framework.testing import RedisServer
from framework.trust.audit.archive import AuditArchive, ExportSummary
from framework.trust.audit.chain import AuditChain, Checkpoint, canonical_body, record_hash
from framework.trust.audit.files import verify_archive
from framework.trust.catalog.signing import PrivateKey, TrustStore

Entry = tuple[str, dict[str, str]]


async def _fill(chain: AuditChain, count: int) -> None:
    for n in range(count):
        await chain.append("executed", {"capability": "valve_control", "n": n})


async def _trim(archive: AuditArchive, *, keep: int | None = None,
                before_seq: int | None = None) -> int:
    plan = await archive.plan_trim(keep=keep, before_seq=before_seq)
    assert plan is not None
    return (await archive.trim(plan)).removed


async def _seqs(redis: Redis) -> list[int]:
    entries: list[Entry] = await redis.xrange(AUDIT_STREAM)
    return [orjson.loads(fields["body"])["seq"] for _, fields in entries]


async def _replace_entry(redis: Redis, entry_id: str, fields: dict[str, str]) -> None:
    """Rewrite one entry in place (same id), as a tamperer with write access would."""
    entries: list[Entry] = await redis.xrange(AUDIT_STREAM)
    await redis.delete(AUDIT_STREAM)
    for other_id, other in entries:
        await redis.xadd(AUDIT_STREAM, fields if other_id == entry_id else other, id=other_id)


async def _export_to(archive: AuditArchive, path: Path,
                     before_seq: int | None = None) -> ExportSummary:
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    summary = await archive.export(sink, before_seq=before_seq)
    await asyncio.to_thread(path.write_bytes, b"".join(chunks))
    return summary


async def test_trim_keeps_the_newest_records_behind_a_checkpoint_and_verifies(
    redis: Redis,
) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 10)
    seventh = [r async for r in chain.records()][6]
    head_before = await redis.hgetall(AUDIT_HEAD_KEY)

    assert await _trim(AuditArchive(redis, chain=chain), keep=3) == 7

    assert await _seqs(redis) == [8, 9, 10]
    assert await redis.hgetall(AUDIT_HEAD_KEY) == head_before
    checkpoint = await chain.checkpoint()
    assert isinstance(checkpoint, Checkpoint)
    assert (checkpoint.seq, checkpoint.hash, checkpoint.entry_id) == (
        7, seventh.hash, seventh.entry_id)
    report = await chain.verify()
    assert report.ok, report.broken
    assert (report.records, report.checkpoint) == (3, checkpoint)

    await _fill(chain, 1)
    assert await _seqs(redis) == [8, 9, 10, 11]
    assert (await chain.verify()).ok


async def test_before_seq_and_keep_together_remove_only_what_both_allow(redis: Redis) -> None:
    chain = AuditChain(redis)
    archive = AuditArchive(redis, chain=chain)
    await _fill(chain, 10)
    assert await _trim(archive, keep=2, before_seq=5) == 4
    assert await _seqs(redis) == list(range(5, 11))
    assert await _trim(archive, keep=4, before_seq=9) == 2
    assert await _seqs(redis) == [7, 8, 9, 10]
    assert await archive.plan_trim(before_seq=7) is None
    assert await archive.plan_trim(keep=4) is None
    assert (await chain.verify()).ok


async def test_trimming_everything_leaves_a_chain_that_verifies_and_grows(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 4)
    assert await _trim(AuditArchive(redis, chain=chain), keep=0) == 4
    assert await _seqs(redis) == []
    report = await chain.verify()
    assert report.ok and report.records == 0, report.broken
    await _fill(chain, 2)
    assert await _seqs(redis) == [5, 6]
    assert (await chain.verify()).ok


async def test_plan_trim_needs_to_know_what_to_remove(redis: Redis) -> None:
    with pytest.raises(ValueError, match="give keep or before_seq"):
        await AuditArchive(redis, chain=AuditChain(redis)).plan_trim()


async def test_an_edited_first_kept_record_is_reported_against_the_checkpoint(
    redis: Redis,
) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 6)
    await _trim(AuditArchive(redis, chain=chain), keep=3)
    first_id, fields = (await redis.xrange(AUDIT_STREAM))[0]

    body = orjson.loads(fields["body"])
    body["n"] = 99
    await _replace_entry(redis, first_id, {**fields, "body": canonical_body(body).decode()})
    report = await chain.verify()
    assert report.broken is not None
    assert (report.broken.seq, report.broken.entry_id) == (4, first_id)
    assert "does not match its hash" in report.broken.problem

    # Relinked and rehashed so that it is self-consistent: the checkpoint still tells.
    body["prev"] = "f" * 64
    forged = canonical_body(body)
    await _replace_entry(redis, first_id, {"body": forged.decode(),
                                           "hash": record_hash(forged)})
    report = await chain.verify()
    assert report.broken is not None and report.broken.seq == 4
    assert "does not follow the checkpoint" in report.broken.problem
    assert "record 3" in report.broken.problem


async def test_a_changed_or_missing_checkpoint_is_a_broken_link(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 6)
    await _trim(AuditArchive(redis, chain=chain), keep=3)
    stored = await redis.hget(AUDIT_CHECKPOINT_KEY, "body")
    assert stored is not None

    body = orjson.loads(stored)
    body["hash"] = "a" * 64
    await redis.hset(AUDIT_CHECKPOINT_KEY, "body", canonical_body(body).decode())
    report = await chain.verify()
    assert report.broken is not None and report.broken.seq == 4
    assert "does not follow the checkpoint" in report.broken.problem

    await redis.hset(AUDIT_CHECKPOINT_KEY, "body", "{not json")
    report = await chain.verify()
    assert report.broken is not None and report.broken.checkpoint == AUDIT_CHECKPOINT_KEY
    assert str(report.broken).startswith(
        f"the checkpoint {AUDIT_CHECKPOINT_KEY}: is not a valid checkpoint: ")

    await redis.delete(AUDIT_CHECKPOINT_KEY)
    report = await chain.verify()
    assert report.broken is not None and report.broken.seq == 4
    assert ("the chain starts at seq 4 but there is no checkpoint: records 1..3 were "
            "removed") in report.broken.problem


async def test_a_signed_checkpoint_verifies_only_against_trusted_keys(redis: Redis) -> None:
    executor_key, operator_key = PrivateKey.generate(), PrivateKey.generate()
    chain = AuditChain(redis, signing_key=executor_key)
    await _fill(chain, 5)
    await _trim(AuditArchive(redis, chain=chain, signing_key=operator_key), keep=2)
    both = TrustStore([executor_key.public(), operator_key.public()])
    report = await chain.verify(both, require_signatures=True)
    assert report.ok, report.broken
    assert report.checkpoint is not None and report.checkpoint.signature

    report = await chain.verify(TrustStore([executor_key.public()]))
    assert report.broken is not None and report.broken.checkpoint == AUDIT_CHECKPOINT_KEY
    assert "bad signature" in report.broken.problem and "not a trusted key" in report.broken.problem

    # Its time rewritten under the old signature: the signature no longer matches.
    stored = await redis.hget(AUDIT_CHECKPOINT_KEY, "body")
    body = orjson.loads(stored or "")
    body["at"] = "2020-01-01T00:00:00.000Z"
    await redis.hset(AUDIT_CHECKPOINT_KEY, "body", canonical_body(body).decode())
    report = await chain.verify(both)
    assert report.broken is not None and report.broken.seq == 3
    assert str(report.broken).startswith(f"the checkpoint {AUDIT_CHECKPOINT_KEY} (seq 3, ")
    assert "does not match" in report.broken.problem


async def test_an_unsigned_checkpoint_fails_when_signatures_are_required(redis: Redis) -> None:
    key = PrivateKey.generate()
    chain = AuditChain(redis, signing_key=key)
    await _fill(chain, 3)
    await _trim(AuditArchive(redis, chain=chain), keep=1)
    trust = TrustStore([key.public()])
    assert (await chain.verify(trust)).ok
    report = await chain.verify(trust, require_signatures=True)
    assert report.broken is not None
    assert report.broken.problem == "the checkpoint is not signed"


async def test_records_removed_by_hand_are_reported_with_or_without_a_checkpoint(
    redis: Redis,
) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 9)
    ids = [entry_id for entry_id, _ in await redis.xrange(AUDIT_STREAM)]
    await redis.xtrim(AUDIT_STREAM, minid=ids[2], approximate=False)
    report = await chain.verify()
    assert report.broken is not None and (report.broken.seq, report.broken.entry_id) == (3, ids[2])
    assert ("the chain starts at seq 3 but there is no checkpoint: records 1..2 were removed "
            "without one") in report.broken.problem

    await redis.delete(AUDIT_STREAM, AUDIT_HEAD_KEY)
    await _fill(chain, 9)
    await _trim(AuditArchive(redis, chain=chain), keep=6)
    ids = [entry_id for entry_id, _ in await redis.xrange(AUDIT_STREAM)]
    await redis.xtrim(AUDIT_STREAM, minid=ids[3], approximate=False)
    report = await chain.verify()
    assert report.broken is not None and report.broken.seq == 7
    assert ("seq is 7, but the checkpoint ends at seq 3: records 4..6 were removed without a "
            "checkpoint") in report.broken.problem


async def test_a_trim_refuses_to_remove_a_broken_part(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 6)
    second_id, fields = (await redis.xrange(AUDIT_STREAM))[1]
    body = orjson.loads(fields["body"])
    body["n"] = 42
    await _replace_entry(redis, second_id, {**fields, "body": canonical_body(body).decode()})
    with pytest.raises(AuditTrimError, match=r"broken at record 2 .*does not match its hash"):
        await AuditArchive(redis, chain=chain).plan_trim(keep=1)
    assert await redis.xlen(AUDIT_STREAM) == 6
    assert not await redis.exists(AUDIT_CHECKPOINT_KEY)


async def test_a_stale_plan_changes_nothing(redis: Redis) -> None:
    chain = AuditChain(redis)
    archive = AuditArchive(redis, chain=chain)
    await _fill(chain, 8)
    stale = await archive.plan_trim(keep=5)
    assert stale is not None
    await _trim(archive, keep=6)
    with pytest.raises(AuditTrimError, match="checkpoint changed meanwhile"):
        await archive.trim(stale)
    assert await _seqs(redis) == [3, 4, 5, 6, 7, 8]

    plan = await archive.plan_trim(keep=2)
    assert plan is not None
    last_id, fields = (await redis.xrange(AUDIT_STREAM))[3]
    assert last_id == plan.last.entry_id
    await _replace_entry(redis, last_id, {**fields, "hash": "b" * 64})
    with pytest.raises(AuditTrimError, match=f"entry {last_id} changed meanwhile"):
        await archive.trim(plan)
    assert await _seqs(redis) == [3, 4, 5, 6, 7, 8]


async def test_trims_while_other_clients_append_leave_one_valid_chain(
    redis: Redis, redis_server: RedisServer
) -> None:
    writers = [create_redis(redis_server.url) for _ in range(2)]
    done = asyncio.Event()

    async def append(client: Redis, writer: int) -> None:
        chain = AuditChain(client)
        for n in range(150):
            await chain.append("executed", {"capability": "valve_control",
                                            "writer": writer, "n": n})

    async def trim_repeatedly() -> int:
        archive, trims = AuditArchive(redis, chain=AuditChain(redis)), 0
        while not done.is_set():
            plan = await archive.plan_trim(keep=20)
            if plan is not None:
                await archive.trim(plan)
                trims += 1
            await asyncio.sleep(0.005)
        return trims

    try:
        trimmer = asyncio.create_task(trim_repeatedly())
        await asyncio.gather(*(append(client, w) for w, client in enumerate(writers)))
        done.set()
        trims = await trimmer
    finally:
        for client in writers:
            await client.aclose()
    assert trims >= 2  # trims really ran between appends
    report = await AuditChain(redis).verify()
    assert report.ok, report.broken
    assert report.checkpoint is not None
    assert report.checkpoint.seq + report.records == 300
    assert await _seqs(redis) == list(range(report.checkpoint.seq + 1, 301))


async def test_export_then_trim_then_the_archive_joins_the_checkpoint(
    redis: Redis, tmp_path: Path
) -> None:
    chain = AuditChain(redis)
    archive = AuditArchive(redis, chain=chain)
    await _fill(chain, 10)
    stored: list[Entry] = await redis.xrange(AUDIT_STREAM)
    first = tmp_path / "audit-1.jsonl"
    summary = await _export_to(archive, first, before_seq=8)
    assert (summary.records, summary.first_seq, summary.last_seq) == (7, 1, 7)
    assert [orjson.loads(line) for line in first.read_bytes().splitlines()] == [
        {"id": i, "body": f["body"], "hash": f["hash"], "sig": None} for i, f in stored[:7]]
    assert await redis.xlen(AUDIT_STREAM) == 10  # exporting changes nothing
    await _trim(archive, before_seq=8)

    report = await verify_archive(chain, [first])
    assert report.ok, (report.broken, report.problem)
    assert (report.records, report.last_seq, report.joined, report.compared) == (7, 7, True, 0)

    # A full export overlaps the live chain: the overlap must be the same records.
    await _fill(chain, 5)
    second = tmp_path / "audit-2.jsonl"
    await _export_to(archive, second)
    await _trim(archive, keep=2)
    report = await verify_archive(chain, [first, second])
    assert report.ok, (report.broken, report.problem)
    assert (report.records, report.first_seq, report.last_seq, report.compared) == (15, 1, 15, 2)
    alone = await verify_archive(chain, [second])
    assert alone.ok and alone.first_seq == 8

    report = await verify_archive(chain, [first])
    assert report.broken is None
    assert report.problem == ("the file(s) end at seq 7, but the live chain was trimmed up to "
                              "seq 13 (its checkpoint): records 8..13 are in no file given "
                              "(add the later archive with another --file)")
    offline = await verify_archive(chain, [first], live=False)
    assert offline.ok and not offline.joined


async def test_an_archive_edited_or_diverging_from_the_live_chain_is_reported(
    redis: Redis, tmp_path: Path
) -> None:
    chain = AuditChain(redis)
    archive = AuditArchive(redis, chain=chain)
    await _fill(chain, 6)
    path = tmp_path / "audit.jsonl"
    await _export_to(archive, path)
    await _trim(archive, keep=2)
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]

    edited = [dict(line) for line in lines]
    body = orjson.loads(edited[2]["body"])
    body["n"] = 7
    edited[2]["body"] = canonical_body(body).decode()
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in edited) + b"\n")
    report = await verify_archive(chain, [path])
    assert report.broken is not None and report.broken.seq == 3
    assert report.broken.problem.endswith(f"the record was edited ({path} line 3)")

    # The last record replaced by a self-consistent forgery: only the live chain tells.
    forged = [dict(line) for line in lines]
    body = orjson.loads(forged[5]["body"])
    body["n"] = 100
    forged[5]["body"] = canonical_body(body).decode()
    forged[5]["hash"] = record_hash(forged[5]["body"].encode())
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in forged) + b"\n")
    report = await verify_archive(chain, [path])
    assert report.broken is None
    assert report.problem is not None and report.problem.startswith("record 6: the file has hash")

    path.write_bytes(b'{"id": "1-0", "body": 3}\n')
    report = await verify_archive(chain, [path])
    assert report.broken is not None
    assert report.broken.problem == f"{path} line 1: body and hash must be strings"


async def test_export_older_than_a_time_stops_at_the_first_newer_record(redis: Redis) -> None:
    chain = AuditChain(redis)
    await _fill(chain, 2)
    await asyncio.sleep(0.01)
    await _fill(chain, 2)
    third_id = (await redis.xrange(AUDIT_STREAM))[2][0]
    lines: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        lines.extend(chunk.splitlines())

    archive = AuditArchive(redis, chain=AuditChain(redis))
    summary = await archive.export(sink, before_ms=int(third_id.split("-")[0]))
    assert (summary.records, summary.last_seq) == (2, 2)
    assert [orjson.loads(line)["body"] for line in lines] == [
        f["body"] for _, f in (await redis.xrange(AUDIT_STREAM))[:2]]


def _relinked(lines: list[dict[str, str]], **change: object) -> list[dict[str, str]]:
    """``lines`` with the first record changed and every later one relinked and rehashed:
    a forgery that is consistent in itself."""
    forged, prev = [], None
    for index, line in enumerate(lines):
        body = orjson.loads(line["body"])
        if index == 0:
            body.update(change)
        else:
            body["prev"] = prev
        data = canonical_body(body)
        prev = record_hash(data)
        forged.append({**line, "body": data.decode(), "hash": prev})
    return forged


async def test_overlapping_archives_join_each_other_oldest_first(
    redis: Redis, tmp_path: Path
) -> None:
    chain = AuditChain(redis)
    archive = AuditArchive(redis, chain=chain)
    await _fill(chain, 10)
    older, newer = tmp_path / "audit-1.jsonl", tmp_path / "audit-2.jsonl"
    await _export_to(archive, older)
    await _trim(archive, keep=4)
    await _fill(chain, 5)
    await _export_to(archive, newer)  # seq 7..15: overlaps the older file by 7..10
    await _trim(archive, keep=3)

    report = await verify_archive(chain, [older, newer])
    assert report.ok, (report.broken, report.problem)
    assert (report.records, report.first_seq, report.last_seq) == (15, 1, 15)
    assert (report.checkpoint is not None and report.checkpoint.seq, report.compared) == (12, 3)

    report = await verify_archive(chain, [newer, older])
    assert report.problem == (f"{older} ends at seq 10, before {newer} (seq 15): give the "
                              "archives oldest first")

    # Rewritten from its first record on, the newer file is consistent in itself, but
    # it no longer agrees with the older one where they overlap.
    lines = [orjson.loads(line) for line in newer.read_bytes().splitlines()]
    newer.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in _relinked(lines, n=7)))
    assert (await verify_archive(chain, [newer], live=False)).ok
    report = await verify_archive(chain, [older, newer], live=False)
    assert report.broken is None and report.problem is not None
    assert report.problem.startswith("record 10 hashes to ")
    assert report.problem.endswith(f"in {older}: one of the files was changed")
