"""The audit chain: a tamper-evident log of every execution, refusal and rollback.

Design: **one chain** for the whole fleet, the Redis stream ``audit:chain``.
Each entry holds ``body`` (the record as canonical JSON: orjson with sorted
keys, no whitespace), ``hash`` (SHA-256 hex of that body) and, when the writer
has a signing key, ``sig`` (Ed25519 over the body, ``ed25519:<key-id>:<b64>``
as in :mod:`framework.trust.catalog.signing`). The body holds ``seq`` (1, 2, 3...) and
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

Old records are exported and trimmed by :mod:`framework.trust.audit.archive`, which
leaves a **checkpoint** in ``audit:chain:checkpoint``: the seq and hash of the
last record removed, when, and optionally a signature over it. The chain then
starts after the checkpoint instead of at genesis. :mod:`framework.trust.audit.files`
verifies exported archives and joins them to the checkpoint.

:meth:`AuditChain.verify` walks the stream from the checkpoint (or genesis)
and reports the **first broken link**: the record (seq and entry id) and what
differs (its content no longer matches its hash, its ``prev`` is not the
previous record's hash, a seq gap, a bad signature, a checkpoint that is
invalid or badly signed, or a head that does not match the last record:
truncation). The rules are :class:`framework.trust.audit.links.LinkWalk`, one record
at a time, so that trims and archive files are checked exactly the same way.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from framework.core.clock import Clock, SystemClock, iso_utc
from framework.core.errors import AuditAppendError, SignatureError
from framework.core.keys import audit_keys
from framework.core.scripts import lua
from framework.core.slots import is_cluster
from framework.trust.audit.links import (
    GENESIS_HASH,
    Anchor,
    AuditRecord,
    BrokenLink,
    Checkpoint,
    LinkWalk,
    StoredEntry,
    canonical_body,
    entry_time_s,
    record_hash,
    stored_seq,
)
from framework.trust.catalog.signing import PrivateKey, TrustStore

# The chain's public names, wherever they are defined.
__all__ = [
    "GENESIS_HASH", "Anchor", "AuditChain", "AuditRecord", "BrokenLink", "Checkpoint",
    "LinkWalk", "StoredEntry", "VerifyReport", "canonical_body", "entry_time_s",
    "record_hash", "stored_seq",
]

# Conflicts only happen between processes appending at the same moment; each
# round one of them wins, so this bounds the wait of the unluckiest writer.
_MAX_APPEND_ATTEMPTS = 200
_READ_BATCH = 500


@dataclass(frozen=True)
class VerifyReport:
    records: int
    signed: int
    head_hash: str
    broken: BrokenLink | None
    checkpoint: Checkpoint | None = None

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
        stream: str | None = None,
        head_key: str | None = None,
        checkpoint_key: str | None = None,
        chain: int | None = None,
    ) -> None:
        """Unnamed keys: the documented ones (of chain ``chain`` when the records are
        spread over several chains, FLEET_AUDIT_CHAINS), hash-tagged on a Redis Cluster
        (one slot for the append and trim scripts)."""
        default_stream, default_head, default_checkpoint = audit_keys(
            tagged=is_cluster(redis), chain=chain)
        self.stream = stream or default_stream
        self.head_key = head_key or default_head
        self.checkpoint_key = checkpoint_key or default_checkpoint
        self._redis = redis
        self._signing_key = signing_key
        self._clock = clock or SystemClock()
        self._append = redis.register_script(lua("framework.trust", "audit_append"))
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
            head_hash, head_seq = await self.head()
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

    async def checkpoint(self) -> Checkpoint | BrokenLink | None:
        """The checkpoint of the last trim; None if the chain was never trimmed, a
        BrokenLink if what is stored is not a valid checkpoint."""
        text, signature = cast(list[str | None], await self._redis.hmget(
            self.checkpoint_key, ["body", "sig"]))
        if text is None:
            return None
        try:
            return Checkpoint.parse(text, signature)
        except ValueError as exc:
            return BrokenLink("-", None, f"is not a valid checkpoint: {exc}",
                              checkpoint=self.checkpoint_key)

    async def checked_checkpoint(self, trust: TrustStore | None = None, *,
                                 require_signatures: bool = False
                                 ) -> Checkpoint | BrokenLink | None:
        """The checkpoint, or the BrokenLink that says why it cannot be trusted."""
        checkpoint = await self.checkpoint()
        if isinstance(checkpoint, Checkpoint):
            return self._check_checkpoint(checkpoint, trust, require_signatures) or checkpoint
        return checkpoint

    def _check_checkpoint(self, checkpoint: Checkpoint, trust: TrustStore | None,
                          require_signatures: bool) -> BrokenLink | None:
        """The checkpoint's signature, checked as a record's would be."""
        if trust is None:
            return None
        if not checkpoint.signature:
            if require_signatures:
                return BrokenLink(checkpoint.entry_id, checkpoint.seq,
                                  "the checkpoint is not signed",
                                  checkpoint=self.checkpoint_key)
            return None
        try:
            trust.verify(checkpoint.signed_bytes(), checkpoint.signature,
                         capability=f"audit checkpoint at seq {checkpoint.seq}",
                         now_s=checkpoint.at_s)
        except SignatureError as exc:
            return BrokenLink(checkpoint.entry_id, checkpoint.seq, f"bad signature: {exc}",
                              checkpoint=self.checkpoint_key)
        return None

    async def verify(self, trust: TrustStore | None = None, *,
                     require_signatures: bool = False) -> VerifyReport:
        """Walk the chain from its checkpoint (or genesis); the report names the first
        broken link, if any."""
        checkpoint = await self.checked_checkpoint(trust, require_signatures=require_signatures)
        if isinstance(checkpoint, BrokenLink):
            return VerifyReport(0, 0, GENESIS_HASH, checkpoint)
        walk = LinkWalk(Anchor.of(checkpoint), trust, require_signatures=require_signatures)
        async for entry_id, fields in self.entries():
            broken = walk.check(entry_id, fields)
            if broken is not None:
                return VerifyReport(walk.count, walk.signed, walk.last_hash, broken, checkpoint)
        broken = await self._check_head(walk)
        return VerifyReport(walk.count, walk.signed, walk.last_hash, broken, checkpoint)

    async def head(self) -> tuple[str, int]:
        """Hash and seq of the newest record (genesis and 0 for an empty chain)."""
        head = cast(list[str | None], await self._redis.hmget(self.head_key, ["hash", "seq"]))
        return (head[0] or GENESIS_HASH), int(head[1] or 0)

    async def _check_head(self, walk: LinkWalk) -> BrokenLink | None:
        head_hash, head_seq = await self.head()
        if (head_hash, head_seq) == (walk.last_hash, walk.last_seq):
            return None
        last_id = walk.last.entry_id if walk.last is not None else "-"
        return BrokenLink(
            last_id, walk.last_seq or None,
            f"the chain ends at seq {walk.last_seq} (hash {walk.last_hash[:16]}...) but its "
            f"head {self.head_key} says seq {head_seq} (hash {head_hash[:16]}...): records "
            "were removed from the end, or the last one was replaced",
        )

    async def _walk(self, since_ms: int | None) -> AsyncIterator[AuditRecord]:
        async for entry_id, fields in self.entries(since_ms=since_ms):
            try:
                body = orjson.loads(fields.get("body") or "")
            except orjson.JSONDecodeError:
                continue  # verify reports it; a reader shows what it can
            yield AuditRecord(entry_id, body, fields.get("hash") or "", fields.get("sig"))

    async def entries(self, *, since_ms: int | None = None) -> AsyncIterator[StoredEntry]:
        """The stream's entries as stored, oldest first, read in batches."""
        start = f"{since_ms}-0" if since_ms is not None else "-"
        while True:
            batch = cast(list[tuple[str, dict[str, str]]],
                         await self._redis.xrange(self.stream, min=start, count=_READ_BATCH))
            for entry_id, fields in batch:
                yield entry_id, fields
            if len(batch) < _READ_BATCH:
                return
            start = f"({batch[-1][0]}"
