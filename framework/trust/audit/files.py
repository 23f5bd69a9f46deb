"""Verifying exported audit archives and joining them to the live chain.

An archive is a file of JSON lines written by ``audit export``
(:mod:`framework.trust.audit.archive`). Each file is walked on its own with the
same :class:`LinkWalk` as ``verify``: a file that starts at seq 1 must start
at genesis; a later one can only be linked to the file before it. Files are
given oldest first and may overlap (each export also holds the records a trim
kept): a file joins the one before if it starts right after it with the right
``prev``, or if its record at the earlier file's last seq has the same hash.
Equal hashes at one seq mean equal records up to there, since each hash covers
the ``prev`` before it, so the overlap needs no record-by-record comparison.

The files then join the **live chain** the same way at its checkpoint (or at
genesis when it was never trimmed), and every archived record still in the
stream must have the same hash there.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

from framework.trust.audit.chain import (
    GENESIS_HASH,
    Anchor,
    AuditChain,
    BrokenLink,
    Checkpoint,
    LinkWalk,
    stored_seq,
)
from framework.trust.audit.links import stored_body
from framework.trust.catalog.signing import TrustStore

_ENTRY_ID = re.compile(r"^\d+-\d+$")

Fields = dict[str, str | None]


@dataclass(frozen=True)
class ArchiveReport:
    """The archives' own links (``broken``) and how they join the live chain
    (``problem``; ``checkpoint`` is the live checkpoint they were joined to)."""

    records: int
    signed: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str
    broken: BrokenLink | None = None
    problem: str | None = None
    joined: bool = False
    checkpoint: Checkpoint | None = None
    compared: int = 0

    @property
    def ok(self) -> bool:
        return self.broken is None and self.problem is None


@dataclass
class _Segment:
    """One file's walk."""

    path: Path
    walk: LinkWalk | None = None
    first_seq: int = 0
    first_prev: str | None = None
    hash_at_join: str | None = None


@dataclass
class _Scan:
    """The files so far as one chain, and what joining the live chain needs."""

    checkpoint_seq: int | None
    records: int = 0
    signed: int = 0
    first_seq: int | None = None
    first_prev: str | None = None
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    last_path: Path | None = None
    broken: BrokenLink | None = None
    problem: str | None = None
    hash_at_checkpoint: str | None = None
    later: dict[int, str] = field(default_factory=dict)

    def report(self, *, problem: str | None = None, joined: bool = False,
               checkpoint: Checkpoint | None = None, compared: int = 0) -> ArchiveReport:
        return ArchiveReport(
            records=self.records, signed=self.signed, first_seq=self.first_seq,
            last_seq=self.last_seq if self.records else None, last_hash=self.last_hash,
            broken=self.broken, problem=self.problem or problem, joined=joined,
            checkpoint=checkpoint, compared=compared,
        )


async def verify_archive(chain: AuditChain, paths: Sequence[Path], *,
                         trust: TrustStore | None = None, require_signatures: bool = False,
                         live: bool = True) -> ArchiveReport:
    """Check the links of archive files (oldest first) and, with ``live``, that they
    join ``chain`` at its checkpoint."""
    checkpoint: Checkpoint | None = None
    if live:
        found = await chain.checked_checkpoint(trust, require_signatures=require_signatures)
        if isinstance(found, BrokenLink):
            return ArchiveReport(0, 0, None, None, GENESIS_HASH, broken=found)
        checkpoint = found
    scan = _Scan(checkpoint_seq=(checkpoint.seq if checkpoint else 0) if live else None)
    await asyncio.to_thread(_scan_files, scan, paths, trust, require_signatures)
    if scan.broken is not None or scan.problem is not None or not live:
        return scan.report()
    problem = _live_join_problem(scan, checkpoint)
    if problem is not None:
        return scan.report(problem=problem, checkpoint=checkpoint)
    compared, problem = await _compare_live(chain, scan.later)
    return scan.report(problem=problem, joined=problem is None, checkpoint=checkpoint,
                       compared=compared)


def _scan_files(scan: _Scan, paths: Sequence[Path], trust: TrustStore | None,
                require_signatures: bool) -> None:
    for path in paths:
        _scan_file(scan, path, trust, require_signatures)
        if scan.broken is not None or scan.problem is not None:
            return


def _scan_file(scan: _Scan, path: Path, trust: TrustStore | None,
               require_signatures: bool) -> None:
    segment = _Segment(path)
    joins_at = scan.last_seq if scan.records else None
    for where, entry in _file_entries(path):
        if isinstance(entry, BrokenLink):
            scan.broken = entry
            return
        entry_id, fields = entry
        if segment.walk is None:
            segment.walk = LinkWalk(_first_anchor(fields), trust,
                                    require_signatures=require_signatures)
            segment.first_seq, segment.first_prev = stored_seq(fields) or 0, _prev_of(fields)
        walk = segment.walk
        broken = walk.check(entry_id, fields)
        if broken is not None:
            scan.broken = replace(broken, problem=f"{broken.problem} ({where})")
            return
        _note(scan, walk, joins_at)
        if walk.last_seq == joins_at:
            segment.hash_at_join = walk.last_hash
    if segment.walk is None or segment.walk.count == 0:
        return
    if scan.records and joins_at is not None:
        scan.problem = _file_join_problem(scan, segment)
    if scan.first_seq is None:
        scan.first_seq, scan.first_prev = segment.first_seq, segment.first_prev
    if segment.walk.last_seq > scan.last_seq:
        scan.last_seq, scan.last_hash = segment.walk.last_seq, segment.walk.last_hash
        scan.last_path = path
    # Counted here, not per record, so that overlapping files count each record once.
    scan.records = scan.last_seq - (scan.first_seq or 1) + 1


def _note(scan: _Scan, walk: LinkWalk, joins_at: int | None) -> None:
    """Keep what joining the live chain needs; count signatures of new records."""
    seq, digest = walk.last_seq, walk.last_hash
    if (joins_at is None or seq > joins_at) and walk.last is not None:
        scan.signed += bool(walk.last.signature)
    if scan.checkpoint_seq is None:
        return
    if seq == scan.checkpoint_seq:
        scan.hash_at_checkpoint = digest
    elif seq > scan.checkpoint_seq:
        scan.later[seq] = digest


def _file_join_problem(scan: _Scan, segment: _Segment) -> str | None:
    """Why ``segment`` does not continue the files before it, if it does not."""
    assert segment.walk is not None
    earlier, end, end_hash = scan.last_path, scan.last_seq, scan.last_hash
    if segment.first_seq > end + 1:
        return (f"{segment.path} starts at seq {segment.first_seq}, but {earlier} ends at "
                f"seq {end}: records {end + 1}..{segment.first_seq - 1} are in no file given")
    if segment.walk.last_seq < end:
        return (f"{segment.path} ends at seq {segment.walk.last_seq}, before {earlier} "
                f"(seq {end}): give the archives oldest first")
    if segment.first_seq == end + 1 and segment.first_prev != end_hash:
        return (f"{segment.path} starts with record {segment.first_seq} linked to "
                f"{str(segment.first_prev)[:16]}..., but record {end} in {earlier} hashes "
                f"to {end_hash[:16]}...: one of the files was changed")
    if segment.first_seq <= end and segment.hash_at_join != end_hash:
        return (f"record {end} hashes to {str(segment.hash_at_join)[:16]}... in "
                f"{segment.path} but to {end_hash[:16]}... in {earlier}: one of the files "
                "was changed")
    return None


def _live_join_problem(scan: _Scan, checkpoint: Checkpoint | None) -> str | None:
    """Why the files do not reach the live chain's start, if they do not."""
    start_seq = checkpoint.seq if checkpoint else 0
    start_hash = checkpoint.hash if checkpoint else GENESIS_HASH
    trimmed = (f"the live chain was trimmed up to seq {start_seq} (its checkpoint)"
               if checkpoint else "the live chain has no checkpoint and starts at seq 1")
    if not scan.records or scan.first_seq is None:
        return None if checkpoint is None else f"the file(s) hold no records, but {trimmed}"
    if scan.last_seq < start_seq:
        return (f"the file(s) end at seq {scan.last_seq}, but {trimmed}: records "
                f"{scan.last_seq + 1}..{start_seq} are in no file given (add the later "
                "archive with another --file)")
    if scan.first_seq > start_seq + 1:
        return (f"the file(s) start at seq {scan.first_seq}, but {trimmed}: records "
                f"{start_seq + 1}..{scan.first_seq - 1} are in no file given (add the "
                "earlier archive first)")
    if scan.first_seq == start_seq + 1 and scan.first_prev != start_hash:
        return (f"record {scan.first_seq}, the first of the file(s), links to "
                f"{str(scan.first_prev)[:16]}... but the checkpoint hash is "
                f"{start_hash[:16]}...: the file or the checkpoint was changed")
    if scan.hash_at_checkpoint is not None and scan.hash_at_checkpoint != start_hash:
        return (f"record {start_seq} in the file(s) hashes to {scan.hash_at_checkpoint[:16]}"
                f"... but the checkpoint says {start_hash[:16]}...: the file or the "
                "checkpoint was changed")
    return None


async def _compare_live(chain: AuditChain, later: Mapping[int, str]) -> tuple[int, str | None]:
    """How many archived records are still in the stream, all equal; else which differs."""
    if not later:
        return 0, None
    compared, last = 0, max(later)
    async for entry_id, fields in chain.entries():
        seq = stored_seq(fields)
        if seq is not None and seq > last:
            break
        if seq is None or seq not in later:
            continue
        if later[seq] != fields.get("hash"):
            return compared, (f"record {seq}: the file has hash {later[seq][:16]}..., the "
                              f"live chain (entry {entry_id}) {str(fields.get('hash'))[:16]}"
                              "...: one of them was changed")
        compared += 1
    return compared, None


def _file_entries(path: Path) -> Iterator[tuple[str, tuple[str, Fields] | BrokenLink]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        yield str(path), BrokenLink("-", None, f"cannot read {path}: {exc.strerror}")
        return
    with handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                where = f"{path} line {number}"
                yield where, _parse_line(line, where)


def _parse_line(line: bytes, where: str) -> tuple[str, Fields] | BrokenLink:
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return BrokenLink("-", None, f"{where}: not JSON ({exc})")
    if not isinstance(entry, dict):
        return BrokenLink("-", None, f"{where}: not a JSON object")
    entry_id, body, digest, sig = (entry.get(k) for k in ("id", "body", "hash", "sig"))
    if not isinstance(entry_id, str) or not _ENTRY_ID.match(entry_id):
        return BrokenLink("-", None, f"{where}: id {entry_id!r} is not a stream entry id")
    if not isinstance(body, str) or not isinstance(digest, str):
        return BrokenLink(entry_id, None, f"{where}: body and hash must be strings")
    if sig is not None and not isinstance(sig, str):
        return BrokenLink(entry_id, None, f"{where}: sig must be a string or null")
    return entry_id, {"body": body, "hash": digest, "sig": sig}


def _first_anchor(fields: Mapping[str, str | None]) -> Anchor:
    """A file from seq 1 must start at genesis; a later one is joined to the file
    before it afterwards, so its first record is taken as it claims."""
    seq, prev = stored_seq(fields), _prev_of(fields)
    if seq is None or seq <= 1 or prev is None:
        return Anchor.of(None)
    return Anchor(seq - 1, prev, "archive")


def _prev_of(fields: Mapping[str, str | None]) -> str | None:
    prev = stored_body(fields).get("prev")
    return prev if isinstance(prev, str) else None
