"""Keeping the audit chain bounded: export old records, then trim them.

**Export** writes the stream's entries, oldest first, as JSON lines
``{"id", "body", "hash", "sig"}`` with ``body`` exactly as stored, so that an
archive can be re-hashed and its signatures checked without Redis
(:mod:`framework.trust.audit.files` verifies such files).

**Trim** removes the oldest records and leaves a **checkpoint** in
``audit:chain:checkpoint``: the seq, hash and entry id of the last record
removed, when, and (with a signing key) an Ed25519 signature over that. One
Lua script (``audit_trim.lua``) writes the checkpoint and removes the records
(XTRIM MINID + XDEL) in one atomic step, and only if neither the checkpoint
nor the last record to remove changed since they were read. It never touches
the head, so executors keep appending by compare-and-append while a trim
runs. Before that step the links (and signatures, with trusted keys) of every
record to remove, and of the first one kept, are checked: a trim refuses
rather than hide a broken link behind a fresh checkpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import orjson
from redis.asyncio import Redis

from framework.core.clock import Clock, SystemClock, iso_utc
from framework.core.errors import AuditTrimError
from framework.core.scripts import lua
from framework.trust.audit.chain import (
    Anchor,
    AuditChain,
    AuditRecord,
    BrokenLink,
    Checkpoint,
    LinkWalk,
    stored_seq,
)
from framework.trust.catalog.signing import PrivateKey, TrustStore

_EXPORT_BATCH = 500

# Receives the exported lines of one read batch (JSON lines, each ending in \n).
ExportSink = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class ExportSummary:
    records: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str | None


@dataclass(frozen=True)
class TrimPlan:
    """What a trim would remove: ``records`` records from ``first_seq`` to ``last``."""

    current: Checkpoint | None
    first_seq: int
    last: AuditRecord

    @property
    def records(self) -> int:
        return self.last.seq - self.first_seq + 1


@dataclass(frozen=True)
class TrimResult:
    checkpoint: Checkpoint
    removed: int


def export_line(entry_id: str, fields: Mapping[str, str | None]) -> bytes:
    """One entry as an archive line: the stored fields, verbatim."""
    return orjson.dumps({"id": entry_id, "body": fields.get("body"),
                         "hash": fields.get("hash"), "sig": fields.get("sig")}) + b"\n"


class AuditArchive:
    """Exports and trims the chain of ``chain``."""

    def __init__(self, redis: Redis, *, chain: AuditChain,
                 signing_key: PrivateKey | None = None, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self.chain = chain
        self._signing_key = signing_key
        self._trim = redis.register_script(lua("framework.trust", "audit_trim"))

    async def export(self, sink: ExportSink, *, before_seq: int | None = None,
                     before_ms: int | None = None) -> ExportSummary:
        """Write the records older than ``before_seq`` / ``before_ms`` (epoch ms; all
        records without either) to ``sink``, oldest first. Changes nothing."""
        count, first, last, last_hash = 0, None, None, None
        lines: list[bytes] = []
        async for entry_id, fields in self.chain.entries():
            if before_ms is not None and _id_key(entry_id)[0] >= before_ms:
                break
            seq = stored_seq(fields)
            if before_seq is not None and seq is not None and seq >= before_seq:
                break
            lines.append(export_line(entry_id, fields))
            count += 1
            if seq is not None:
                first = seq if first is None else first
                last, last_hash = seq, fields.get("hash")
            if len(lines) >= _EXPORT_BATCH:
                await sink(b"".join(lines))
                lines = []
        if lines:
            await sink(b"".join(lines))
        return ExportSummary(count, first, last, last_hash)

    async def plan_trim(self, *, keep: int | None = None, before_seq: int | None = None,
                        trust: TrustStore | None = None,
                        require_signatures: bool = False) -> TrimPlan | None:
        """What to remove so that at least ``keep`` records remain and none from
        ``before_seq`` on goes (both: the stricter wins); None if nothing would go.
        Raises AuditTrimError if the checkpoint or a link up to the cut is broken."""
        if keep is None and before_seq is None:
            raise ValueError("plan_trim: give keep or before_seq (which records to remove)")
        current = await self.chain.checked_checkpoint(trust,
                                                      require_signatures=require_signatures)
        if isinstance(current, BrokenLink):
            raise AuditTrimError(f"trim refused, nothing removed: {current}")
        keep_from = before_seq
        if keep is not None:
            # Seqs have no gaps in a chain that verifies (the walk below checks that), so
            # the head's seq says where the newest ``keep`` records start.
            _, head_seq = await self.chain.head()
            keep_from = min(head_seq - keep + 1, keep_from or head_seq + 1)
        assert keep_from is not None
        if keep_from <= (current.seq if current else 0) + 1:
            return None
        walk = LinkWalk(Anchor.of(current), trust, require_signatures=require_signatures)
        cut: AuditRecord | None = None
        first_seq = 0
        async for entry_id, fields in self.chain.entries():
            broken = walk.check(entry_id, fields)
            if broken is not None:
                raise AuditTrimError(
                    f"trim refused, nothing removed: the chain is broken at {broken} "
                    "(audit verify shows it; audit export keeps the evidence)")
            if walk.last_seq >= keep_from:
                break
            cut = walk.last
            first_seq = first_seq or walk.last_seq
        if cut is None:
            return None
        return TrimPlan(current, first_seq, cut)

    async def trim(self, plan: TrimPlan) -> TrimResult:
        """Apply ``plan``: write the checkpoint and remove its records atomically."""
        checkpoint = Checkpoint(plan.last.seq, plan.last.hash, plan.last.entry_id,
                                iso_utc(self._clock.time()))
        if self._signing_key is not None:
            checkpoint = replace(checkpoint,
                                 signature=self._signing_key.sign(checkpoint.signed_bytes()))
        expected = plan.current.signed_bytes().decode() if plan.current else ""
        result = await self._trim(
            keys=[self.chain.stream, self.chain.checkpoint_key],
            args=[expected, plan.last.entry_id, plan.last.hash,
                  checkpoint.signed_bytes(), checkpoint.signature or ""],
        )
        if int(result[0]) != 1:
            raise AuditTrimError(f"trim of {self.chain.stream} not applied, nothing removed: "
                                 f"{result[1]}; run it again")
        return TrimResult(checkpoint, int(result[1]))


def _id_key(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)
