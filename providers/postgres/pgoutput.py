"""pgoutput, protocol version 1: the binary messages that
``pg_logical_slot_peek_binary_changes`` returns, decoded into transactions of
changes (PostgreSQL's "Logical Replication Message Formats").

A peek returns whole transactions: Begin, the changes, Commit. Relation messages
describe a table (its columns, their types, which are the key) before its first
change in a decoding session; they are kept per connection, because a new
connection is a new session that sends them again. Values stay raw here (text
output); :mod:`providers.postgres.values` maps them, one change at a time, so that
one unreadable row is one rejected event, never a stopped source.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_IDENTITY = {"d": "default", "n": "nothing", "f": "full", "i": "index"}
_OPS = {b"I": "insert", b"U": "update", b"D": "delete"}


class ProtocolError(ValueError):
    """A message that is not pgoutput version 1 as documented."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    oid: int
    table: str  # schema.name
    identity: str  # default, full, index or nothing (REPLICA IDENTITY)
    columns: tuple[Column, ...]


# A column's value as sent: None (NULL), "u" (an unchanged TOASTed value, not sent)
# or its text output.
Cell = bytes | str | None
UNCHANGED = "u"


@dataclass(frozen=True, slots=True)
class Change:
    """One row change. ``old``: the old row (REPLICA IDENTITY FULL), or only its key
    (``old_is_key``), or None; ``error``: why it could not be read (too big)."""

    op: str
    relation: Relation
    lsn: str
    new: tuple[Cell, ...] | None = None
    old: tuple[Cell, ...] | None = None
    old_is_key: bool = False
    size: int = 0
    error: str = ""
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class Transaction:
    xid: int
    commit_lsn: int  # the end of its commit record: where the slot moves after it
    committed_at: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class PeekedRow:
    """One row of the peek: ``data`` is cut to its first bytes when ``size`` is over
    the limit (``cut``)."""

    lsn: str
    data: bytes
    size: int
    cut: bool = False


@dataclass
class Decoder:
    """Decodes peeked rows into :class:`Transaction` s; keeps the relations seen."""

    relations: dict[int, Relation] = field(default_factory=dict)
    _begin: tuple[int, str] | None = None
    _changes: list[Change] = field(default_factory=list)

    def decode(self, rows: list[PeekedRow]) -> list[Transaction]:
        done: list[Transaction] = []
        for row in rows:
            if not row.data:
                raise ProtocolError(f"an empty message at {row.lsn}")
            kind = row.data[:1]
            if row.cut:
                self._changes.append(self._too_big(row))
            elif kind == b"B":
                self._begin = _read_begin(_Reader(row.data))
                self._changes = []
            elif kind == b"C":
                done.append(self._commit(row))
            elif kind == b"R":
                relation = _read_relation(_Reader(row.data))
                self.relations[relation.oid] = relation
            elif kind in _OPS:
                self._changes.append(self._change(row))
            elif kind == b"T":
                self._changes.extend(self._truncate(row))
            # Y (type), O (origin) and M (message) describe nothing captured.
        return done

    def _commit(self, row: PeekedRow) -> Transaction:
        if self._begin is None:
            raise ProtocolError(f"a Commit without a Begin at {row.lsn}")
        reader = _Reader(row.data)
        reader.skip(1 + 1 + 8)  # kind, flags, the commit record's start
        end, _ = reader.int64(), reader.int64()
        xid, committed_at = self._begin
        self._begin = None
        changes, self._changes = tuple(self._changes), []
        return Transaction(xid=xid, commit_lsn=end, committed_at=committed_at,
                           changes=changes)

    def _relation(self, oid: int, lsn: str) -> Relation:
        try:
            return self.relations[oid]
        except KeyError:
            raise ProtocolError(f"a change of relation {oid} at {lsn} before its "
                                "Relation message") from None

    def _change(self, row: PeekedRow) -> Change:
        reader = _Reader(row.data)
        kind = reader.bytes(1)
        relation = self._relation(reader.int32(), row.lsn)
        old: tuple[Cell, ...] | None = None
        old_is_key = False
        tag = reader.bytes(1)
        if tag in (b"K", b"O"):
            old, old_is_key = _read_tuple(reader), tag == b"K"
            tag = reader.bytes(1) if kind == b"U" else b""
        new = _read_tuple(reader) if tag == b"N" else None
        return Change(op=_OPS[kind], relation=relation, lsn=row.lsn, new=new, old=old,
                      old_is_key=old_is_key, size=row.size, raw=row.data)

    def _truncate(self, row: PeekedRow) -> list[Change]:
        reader = _Reader(row.data)
        reader.skip(1)
        count = reader.int32()
        reader.skip(1)  # options: CASCADE, RESTART IDENTITY
        return [Change(op="truncate", relation=self._relation(reader.int32(), row.lsn),
                       lsn=row.lsn, size=row.size, raw=row.data) for _ in range(count)]

    def _too_big(self, row: PeekedRow) -> Change:
        reader = _Reader(row.data)
        kind = reader.bytes(1)
        relation = self._relation(reader.int32(), row.lsn)
        return Change(op=_OPS.get(kind, "unknown"), relation=relation, lsn=row.lsn,
                      size=row.size, raw=row.data,
                      error=f"a change of {row.size} bytes is over maxChangeBytes")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def bytes(self, count: int) -> bytes:
        end = self._at + count
        if end > len(self._data):
            raise ProtocolError(f"a message ends after {len(self._data)} bytes, "
                                f"{end} expected")
        chunk, self._at = self._data[self._at:end], end
        return chunk

    def skip(self, count: int) -> None:
        self.bytes(count)

    def int8(self) -> int:
        return self.bytes(1)[0]

    def int16(self) -> int:
        return int(struct.unpack("!h", self.bytes(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!I", self.bytes(4))[0])

    def int64(self) -> int:
        return int(struct.unpack("!q", self.bytes(8))[0])

    def string(self) -> str:
        end = self._data.find(b"\0", self._at)
        if end < 0:
            raise ProtocolError("a string without its terminating zero")
        text = self._data[self._at:end].decode()
        self._at = end + 1
        return text


def _read_begin(reader: _Reader) -> tuple[int, str]:
    reader.skip(1 + 8)  # kind, the final LSN
    micros = reader.int64()
    committed_at = (_PG_EPOCH + timedelta(microseconds=micros)).isoformat()
    return reader.int32(), committed_at


def _read_relation(reader: _Reader) -> Relation:
    reader.skip(1)
    oid = reader.int32()
    schema, name = reader.string(), reader.string()
    identity = _IDENTITY.get(chr(reader.int8()), "unknown")
    columns = []
    for _ in range(reader.int16()):
        flags = reader.int8()
        column_name = reader.string()
        type_oid = reader.int32()
        reader.skip(4)  # atttypmod
        columns.append(Column(column_name, type_oid, key=bool(flags & 1)))
    return Relation(oid, f"{schema}.{name}", identity, tuple(columns))


def _read_tuple(reader: _Reader) -> tuple[Cell, ...]:
    cells, reader._at = _tuple_at(reader._data, reader._at)
    return cells


_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")


def _tuple_at(data: bytes, at: int) -> tuple[tuple[Cell, ...], int]:
    """The TupleData at ``at`` and where it ends (the hot path: one per change)."""
    try:
        (count,) = _INT16.unpack_from(data, at)
        at += 2
        cells: list[Cell] = []
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == 0x74 or kind == 0x62:  # t, b: a counted value
                (length,) = _INT32.unpack_from(data, at)
                at += 4
                if length < 0 or at + length > len(data):
                    raise ProtocolError(f"a column of {length} bytes past the message's end")
                cells.append(data[at:at + length])
                at += length
            elif kind == 0x6E:  # n
                cells.append(None)
            elif kind == 0x75:  # u
                cells.append(UNCHANGED)
            else:
                raise ProtocolError(f"a column of kind {chr(kind)!r}")
    except (struct.error, IndexError):
        raise ProtocolError("a row that ends before its columns") from None
    return tuple(cells), at
