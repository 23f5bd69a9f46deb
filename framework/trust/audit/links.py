"""The links of the audit chain: records, the checkpoint of a trim, and the walk that
checks them one after another.

A record's ``hash`` is the SHA-256 of its canonical body (orjson, sorted keys, no
whitespace); the body holds ``seq`` and ``prev``, the hash of the record before
(:data:`GENESIS_HASH` for the first). :class:`LinkWalk` is the one rule set used by
``verify`` on the stream, by a trim on what it removes, and on archive files: from an
:class:`Anchor` (genesis, the checkpoint, or an archive's own first record) each
record must have the next seq, the previous hash as ``prev``, a body that hashes to
its ``hash``, and, with trusted keys, a valid signature. It names the first record
that does not, and why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from framework.core.errors import SignatureError
from framework.trust.catalog.signing import TrustStore

GENESIS_HASH = "0" * 64
_CHECKPOINT_FIELDS = frozenset({"kind", "seq", "hash", "id", "at"})

StoredEntry = tuple[str, Mapping[str, str | None]]


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
class Checkpoint:
    """Where the trimmed part of the chain ended: the last removed record's seq, hash
    and entry id, when it was removed, and optionally a signature over all of that."""

    seq: int
    hash: str
    entry_id: str
    at: str
    signature: str | None = None

    def body(self) -> dict[str, Any]:
        return {"kind": "checkpoint", "seq": self.seq, "hash": self.hash,
                "id": self.entry_id, "at": self.at}

    def signed_bytes(self) -> bytes:
        return canonical_body(self.body())

    @property
    def at_s(self) -> float:
        return datetime.fromisoformat(self.at.replace("Z", "+00:00")).timestamp()

    @classmethod
    def parse(cls, text: str, signature: str | None) -> Checkpoint:
        """The checkpoint stored as ``text``; ValueError says what is wrong with it."""
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the body is not valid JSON ({exc})") from None
        if not isinstance(body, dict) or body.get("kind") != "checkpoint":
            raise ValueError('the body is not a JSON object of kind "checkpoint"')
        # Extra fields would be dropped from the signed bytes: refuse them instead.
        if set(body) != _CHECKPOINT_FIELDS:
            raise ValueError(f"the body has fields {sorted(body)}, expected "
                             f"{sorted(_CHECKPOINT_FIELDS)}")
        seq, digest, entry_id, at = body["seq"], body["hash"], body["id"], body["at"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"seq {seq!r} is not a positive integer")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError(f"hash {digest!r} is not a SHA-256 hex digest")
        if not isinstance(entry_id, str) or not isinstance(at, str):
            raise ValueError("id and at must be strings")
        try:
            zone = datetime.fromisoformat(at.replace("Z", "+00:00")).tzinfo
        except ValueError:
            zone = None
        if zone is None:
            raise ValueError(f"at {at!r} is not an ISO 8601 time with a zone")
        checkpoint = cls(seq, digest, entry_id, at, signature or None)
        # Stored exactly as signed, so the stored text is what a signature covers and
        # what a trim compares before replacing it.
        if checkpoint.signed_bytes().decode() != text:
            raise ValueError("the body is not canonical JSON (sorted keys, no spaces)")
        return checkpoint


@dataclass(frozen=True)
class BrokenLink:
    """Where the chain breaks: the record (seq, stream entry id) and what differs.
    ``checkpoint`` names the checkpoint key when the checkpoint itself is the break."""

    entry_id: str
    seq: int | None
    problem: str
    checkpoint: str | None = None

    def __str__(self) -> str:
        if self.checkpoint is not None:
            where = (f"the checkpoint {self.checkpoint}" if self.seq is None else
                     f"the checkpoint {self.checkpoint} (seq {self.seq}, "
                     f"entry {self.entry_id})")
            return f"{where}: {self.problem}"
        where = f"record {self.seq}" if self.seq is not None else "a record"
        return f"{where} (entry {self.entry_id}): {self.problem}"


@dataclass(frozen=True)
class Anchor:
    """What the first record checked must follow: genesis, the checkpoint of a trim,
    or (for an archive that does not start at seq 1) the record's own claim."""

    seq: int
    hash: str
    kind: Literal["genesis", "checkpoint", "archive"]

    @classmethod
    def of(cls, checkpoint: Checkpoint | None) -> Anchor:
        if checkpoint is None:
            return cls(0, GENESIS_HASH, "genesis")
        return cls(checkpoint.seq, checkpoint.hash, "checkpoint")


class LinkWalk:
    """Checks records one after another, each against the one before it (the first
    against the anchor), and their signatures against ``trust`` when given."""

    def __init__(self, anchor: Anchor, trust: TrustStore | None = None, *,
                 require_signatures: bool = False) -> None:
        self.anchor = anchor
        self.count = 0
        self.signed = 0
        self.last_hash = anchor.hash
        self.last_seq = anchor.seq
        self.last: AuditRecord | None = None
        self._trust = trust
        self._require_signatures = require_signatures

    def check(self, entry_id: str, fields: Mapping[str, str | None]) -> BrokenLink | None:
        """None if the entry is the next good record (the walk moves on to it)."""
        problem, record = self._check_entry(entry_id, fields)
        if problem is None and record is not None:
            problem = _check_signature(record, self._trust, self._require_signatures)
        if problem is not None or record is None:
            return problem
        self.signed += bool(record.signature)
        self.count += 1
        self.last_hash, self.last_seq, self.last = record.hash, record.seq, record
        return None

    def _check_entry(self, entry_id: str, fields: Mapping[str, str | None]
                     ) -> tuple[BrokenLink | None, AuditRecord | None]:
        try:
            body = orjson.loads(fields.get("body") or "")
        except orjson.JSONDecodeError as exc:
            return BrokenLink(entry_id, None, f"the body is not valid JSON ({exc})"), None
        if not isinstance(body, dict):
            return BrokenLink(entry_id, None, "the body is not a JSON object"), None
        seq = body.get("seq")
        record = AuditRecord(entry_id, body, fields.get("hash") or "", fields.get("sig") or None)
        if seq != self.last_seq + 1:
            return BrokenLink(entry_id, seq if isinstance(seq, int) else None,
                              self._seq_problem(seq)), record
        if body.get("prev") != self.last_hash:
            return BrokenLink(entry_id, seq, self._prev_problem(body.get("prev"))), record
        computed = record_hash(canonical_body(body))
        if computed != record.hash:
            return BrokenLink(entry_id, seq,
                              f"the content does not match its hash (stored "
                              f"{record.hash[:16]}..., computed {computed[:16]}...): "
                              "the record was edited"), record
        return None, record

    def _seq_problem(self, seq: object) -> str:
        expected = self.last_seq + 1
        if self.count == 0 and isinstance(seq, int) and seq > expected:
            if self.anchor.kind == "genesis":
                return (f"the chain starts at seq {seq} but there is no checkpoint: records "
                        f"1..{seq - 1} were removed without one (XTRIM or XDEL by hand?)")
            if self.anchor.kind == "checkpoint":
                return (f"seq is {seq}, but the checkpoint ends at seq {self.anchor.seq}: "
                        f"records {expected}..{seq - 1} were removed without a checkpoint")
        return f"seq is {seq!r}, expected {expected}: a record was removed or inserted before it"

    def _prev_problem(self, prev: object) -> str:
        shown = str(prev)[:16]
        if self.count == 0 and self.anchor.kind == "checkpoint":
            return (f"prev is {shown}... but the checkpoint says record {self.anchor.seq} "
                    f"hashed to {self.anchor.hash[:16]}...: this record does not follow the "
                    "checkpoint (the checkpoint or the record was changed)")
        if self.count == 0 and self.anchor.kind == "genesis":
            return (f"prev is {shown}... but the first record must link to genesis "
                    f"({GENESIS_HASH[:16]}...)")
        return (f"prev is {shown}... but record {self.last_seq} hashes to "
                f"{self.last_hash[:16]}...: record {self.last_seq} was changed "
                "(content and hash rewritten)")


def stored_body(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """A stored entry's body; empty if it is not a JSON object."""
    try:
        body = orjson.loads(fields.get("body") or "")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def stored_seq(fields: Mapping[str, str | None]) -> int | None:
    """The seq in a stored entry's body; None if the body is not a record."""
    seq = stored_body(fields).get("seq")
    return seq if isinstance(seq, int) else None


def _check_signature(record: AuditRecord, trust: TrustStore | None,
                     require_signatures: bool) -> BrokenLink | None:
    if trust is None:
        return None
    if not record.signature:
        if require_signatures:
            return BrokenLink(record.entry_id, record.seq, "the record is not signed")
        return None
    # The key must have been valid when the record was written, not today.
    at_s = entry_time_s(record.entry_id)
    try:
        trust.verify(canonical_body(record.body), record.signature,
                     capability=f"audit record {record.seq}", now_s=at_s)
    except SignatureError as exc:
        return BrokenLink(record.entry_id, record.seq, f"bad signature: {exc}")
    return None


def entry_time_s(entry_id: str) -> float:
    """When a stream entry was added (epoch seconds), from its id."""
    return int(entry_id.split("-", 1)[0]) / 1000
