"""Log sequence numbers: PostgreSQL writes them ``16/B374D848`` (two hex halves)."""

from __future__ import annotations


def parse_lsn(text: str) -> int:
    """The 64-bit position of ``text``; ValueError naming it when it is not one."""
    high, sep, low = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"{text!r} is not an LSN (like 16/B374D848)") from None


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
