"""The audit chain: a tamper-evident log of every execution, refusal and rollback.

Design: **one chain** for the whole fleet, the Redis stream ``audit:chain``.
Each entry holds ``body`` (the record as canonical JSON: orjson with sorted
keys, no whitespace), ``hash`` (SHA-256 hex of that body) and, when the writer
has a signing key, ``sig`` (Ed25519 over the body, ``ed25519:<key-id>:<b64>``
as in :mod:`framework.signing`). The body holds ``seq`` (1, 2, 3...) and
``prev``, the hash of the record before it (64 zeros for the first), so
changing, removing or inserting any record breaks a link.

Appends from many executors stay one chain through **compare-and-append**
(``audit_append.lua``): the writer reads the head ``audit:chain:head``
(hash, seq, id), builds and hashes the record in Python — Redis Lua has no
SHA-256 — and the script appends it only if the head has not moved, updating
the head in the same atomic step; otherwise it returns the new head and the
writer rebuilds on it. Writers in one process also queue on a local lock, so
only writers in different processes ever race. One chain (rather than one per
executor) keeps ``verify`` a single linear walk and gives one total order of
what happened to an actuator.

:meth:`AuditChain.verify` walks the stream and reports the **first broken
link**: the record (seq and entry id) and what differs (its content no longer
matches its hash, its ``prev`` is not the previous record's hash, a seq gap, a
bad signature, or a head that does not match the last record: truncation).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from framework.clock import Clock, SystemClock, iso_utc
from framework.constants import AUDIT_HEAD_KEY, AUDIT_STREAM
from framework.errors import AuditAppendError, SignatureError
from framework.scripts import lua
from framework.signing import PrivateKey, TrustStore

GENESIS_HASH = "0" * 64
# Conflicts only happen between processes appending at the same moment; each
# round one of them wins, so this bounds the wait of the unluckiest writer.
_MAX_APPEND_ATTEMPTS = 200
_READ_BATCH = 500


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash and signature cover: sorted, compact JSON."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def record_hash(body_bytes: bytes) -> str:
    return hashlib.sha256(body_bytes).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One record of the chain as stored."""

    entry_id: str
    body: Mapping[str, Any]
    hash: str
    signature: str | None = None

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.entry_id, "hash": self.hash, "signed": bool(self.signature),
                **self.body}


@dataclass(frozen=True)
class BrokenLink:
    """Where the chain breaks: the record (seq, stream entry id) and what differs."""

    entry_id: str
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"record {self.seq}" if self.seq is not None else "a record"
        return f"{where} (entry {self.entry_id}): {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    records: int
    signed: int
    head_hash: str
    broken: BrokenLink | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class AuditChain:
    """Appends records to, reads and verifies the chain in ``stream``."""

    def __init__(
        self,
        redis: Redis,
        *,
        signing_key: PrivateKey | None = None,
        clock: Clock | None = None,
        stream: str = AUDIT_STREAM,
        head_key: str = AUDIT_HEAD_KEY,
    ) -> None:
        self.stream = stream
        self.head_key = head_key
        self._redis = redis
        self._signing_key = signing_key
        self._clock = clock or SystemClock()
        self._append = redis.register_script(lua("audit_append"))
        self._local = asyncio.Lock()

    async def append(self, kind: str, fields: Mapping[str, Any]) -> AuditRecord:
        """Append a record of ``kind`` (``executed``, ``refused``...) holding ``fields``."""
        # Normalised through JSON once so that verification, which only sees the
        # stored JSON, re-encodes exactly the same bytes.
        content = orjson.loads(orjson.dumps(
            {**fields, "kind": kind, "at": iso_utc(self._clock.time())},
            default=str, option=orjson.OPT_NON_STR_KEYS,
        ))
        async with self._local:
            head_hash, head_seq = await self._head()
            for attempt in range(_MAX_APPEND_ATTEMPTS):
                body = {**content, "seq": head_seq + 1, "prev": head_hash}
                data = canonical_body(body)
                digest = record_hash(data)
                signature = self._signing_key.sign(data) if self._signing_key else ""
                result = await self._append(
                    keys=[self.stream, self.head_key],
                    args=[head_hash, head_seq + 1, data, digest, signature, GENESIS_HASH],
                )
                if int(result[0]) == 1:
                    return AuditRecord(str(result[1]), body, digest, signature or None)
                head_hash, head_seq = str(result[1]), int(result[2])
                # Another process won this round; spread the retries a little.
                await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))
        raise AuditAppendError(
            f"could not append to {self.stream} after {_MAX_APPEND_ATTEMPTS} attempts "
            "(the head kept moving)"
        )

    async def records(
        self, *, since_ms: int | None = None, capability: str | None = None,
        kind: str | None = None,
    ) -> AsyncIterator[AuditRecord]:
        """The records in chain order, optionally from ``since_ms`` (epoch ms) on and
        only those of one capability id or kind."""
        async for record in self._walk(since_ms):
            if capability is not None and record.body.get("capability") != capability:
                continue
            if kind is not None and record.kind != kind:
                continue
            yield record

    async def verify(self, trust: TrustStore | None = None, *,
                     require_signatures: bool = False) -> VerifyReport:
        """Walk the whole chain; the report names the first broken link, if any."""
        expected_prev, expected_seq, count, signed = GENESIS_HASH, 1, 0, 0
        last_id = "-"
        async for entry_id, fields in self._entries(None):
            problem, record = _check_entry(entry_id, fields, expected_prev, expected_seq)
            if problem is None and record is not None:
                problem = _check_signature(record, trust, require_signatures)
            if problem is not None:
                return VerifyReport(count, signed, expected_prev, problem)
            assert record is not None
            signed += bool(record.signature)
            count += 1
            expected_prev, expected_seq, last_id = record.hash, expected_seq + 1, entry_id
        broken = await self._check_head(expected_prev, count, last_id)
        return VerifyReport(count, signed, expected_prev, broken)

    async def _head(self) -> tuple[str, int]:
        head = cast(list[str | None], await self._redis.hmget(self.head_key, ["hash", "seq"]))
        return (head[0] or GENESIS_HASH), int(head[1] or 0)

    async def _check_head(self, last_hash: str, count: int, last_id: str) -> BrokenLink | None:
        head_hash, head_seq = await self._head()
        if (head_hash, head_seq) == (last_hash, count):
            return None
        return BrokenLink(
            last_id, count or None,
            f"the chain ends at seq {count} (hash {last_hash[:16]}...) but its head "
            f"{self.head_key} says seq {head_seq} (hash {head_hash[:16]}...): records "
            "were removed from the end, or the last one was replaced",
        )

    async def _walk(self, since_ms: int | None) -> AsyncIterator[AuditRecord]:
        async for entry_id, fields in self._entries(since_ms):
            try:
                body = orjson.loads(fields.get("body", ""))
            except orjson.JSONDecodeError:
                continue  # verify reports it; a reader shows what it can
            yield AuditRecord(entry_id, body, fields.get("hash", ""), fields.get("sig"))

    async def _entries(self, since_ms: int | None) -> AsyncIterator[tuple[str, dict[str, str]]]:
        start = f"{since_ms}-0" if since_ms is not None else "-"
        while True:
            batch = cast(list[tuple[str, dict[str, str]]],
                         await self._redis.xrange(self.stream, min=start, count=_READ_BATCH))
            for entry_id, fields in batch:
                yield entry_id, fields
            if len(batch) < _READ_BATCH:
                return
            start = f"({batch[-1][0]}"


def _check_entry(
    entry_id: str, fields: Mapping[str, str], expected_prev: str, expected_seq: int
) -> tuple[BrokenLink | None, AuditRecord | None]:
    try:
        body = orjson.loads(fields.get("body", ""))
    except orjson.JSONDecodeError as exc:
        return BrokenLink(entry_id, None, f"the body is not valid JSON ({exc})"), None
    if not isinstance(body, dict):
        return BrokenLink(entry_id, None, "the body is not a JSON object"), None
    seq = body.get("seq")
    record = AuditRecord(entry_id, body, fields.get("hash", ""), fields.get("sig"))
    if seq != expected_seq:
        return BrokenLink(entry_id, seq if isinstance(seq, int) else None,
                          f"seq is {seq!r}, expected {expected_seq}: a record was "
                          "removed or inserted before it"), record
    if body.get("prev") != expected_prev:
        return BrokenLink(entry_id, seq,
                          f"prev is {str(body.get('prev'))[:16]}... but record {seq - 1} "
                          f"hashes to {expected_prev[:16]}...: record {seq - 1} was changed "
                          "(content and hash rewritten)"), record
    computed = record_hash(canonical_body(body))
    if computed != record.hash:
        return BrokenLink(entry_id, seq,
                          f"the content does not match its hash (stored "
                          f"{record.hash[:16]}..., computed {computed[:16]}...): "
                          "the record was edited"), record
    return None, record


def _check_signature(record: AuditRecord, trust: TrustStore | None,
                     require_signatures: bool) -> BrokenLink | None:
    if trust is None:
        return None
    if not record.signature:
        if require_signatures:
            return BrokenLink(record.entry_id, record.seq, "the record is not signed")
        return None
    # The key must have been valid when the record was written, not today.
    at_s = _epoch_s(record.entry_id)
    try:
        trust.verify(canonical_body(record.body), record.signature,
                     capability=f"audit record {record.seq}", now_s=at_s)
    except SignatureError as exc:
        return BrokenLink(record.entry_id, record.seq, f"bad signature: {exc}")
    return None


def _epoch_s(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000
