"""Stream entries as Redis sends them (bytes), decoded one entry and one field at a time.

The consumer reads with ``NEVER_DECODE``: a client that decodes whole replies would
fail the whole XREADGROUP or XAUTOCLAIM reply on one entry that is not UTF-8 (anyone
who can XADD can write one), and so stop the group forever. Here such an entry becomes
an :class:`Undecodable`, which the consumer dead-letters with its raw bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

RawPairs = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Undecodable:
    """An entry with a field name or value that is not UTF-8."""

    raw: RawPairs
    problem: str  # which field, and where its bytes go wrong

    def readable(self) -> dict[str, str]:
        """The fields with the bad bytes escaped (``\\xff``), for people to read."""
        return {name.decode(errors="backslashreplace"): value.decode(errors="backslashreplace")
                for name, value in self.raw}

    def raw_json(self) -> str:
        """``[name, value, ...]``, each base64: the entry's exact bytes, in order."""
        return orjson.dumps([base64.b64encode(part).decode()
                             for pair in self.raw for part in pair]).decode()

    def reason(self, stream: str, entry_id: str) -> str:
        return (f"entry {entry_id} of stream {stream!r} is not UTF-8: {self.problem}; "
                "its raw bytes are in raw_fields (base64)")


Fields = dict[str, str] | Undecodable


def decode_fields(raw: Any) -> Fields:
    """The fields of one entry (a mapping or a flat list of bytes), decoded as UTF-8."""
    pairs = tuple(_pairs(raw))
    fields: dict[str, str] = {}
    for name, value in pairs:
        try:
            key = name.decode()
        except UnicodeDecodeError as exc:
            return Undecodable(pairs, f"field {name!r} (name): {exc.reason} at byte {exc.start}")
        try:
            fields[key] = value.decode()
        except UnicodeDecodeError as exc:
            return Undecodable(pairs, f"field {key!r}: {exc.reason} at byte {exc.start}")
    return fields


def text(value: bytes | str) -> str:
    """A stream name, entry id or cursor: ASCII, or the name we sent."""
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else value


def _pairs(raw: Any) -> Iterable[tuple[bytes, bytes]]:
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        return ((_as_bytes(k), _as_bytes(v)) for k, v in raw.items())
    flat: Sequence[Any] = raw
    return ((_as_bytes(k), _as_bytes(v)) for k, v in zip(flat[::2], flat[1::2], strict=True))


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
