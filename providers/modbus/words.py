"""Modbus values to and from 16-bit registers: the numeric types, their word order
(which register holds the most significant word) and byte order (which byte of a
register comes first), as devices actually lay them out.

Big word and big byte order (``ABCD``) is the Modbus default; ``CDAB`` (little word
order) is common on PLCs, ``BADC`` and ``DCBA`` exist. Both orders apply to every
multi-register type; the byte order applies to 16-bit types too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal

Order = Literal["big", "little"]
NumericType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64"]
BIT_TYPES = ("bool", "coil")

# How many registers one value of a type spans, and its struct code (big-endian).
WIDTH: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2,
                         "float32": 2, "float64": 4}
_CODE = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f",
         "float64": "d"}


def decode(words: Sequence[int], kind: str, *, word_order: Order = "big",
           byte_order: Order = "big") -> int | float:
    """One value of ``kind`` from exactly ``WIDTH[kind]`` registers, as read."""
    if len(words) != WIDTH[kind]:
        raise ValueError(f"{kind} needs {WIDTH[kind]} registers, got {len(words)}")
    ordered = words if word_order == "big" else list(reversed(words))
    data = b"".join(_word_bytes(word, byte_order) for word in ordered)
    value: int | float = struct.unpack(">" + _CODE[kind], data)[0]
    return value


def encode(value: int | float, kind: str, *, word_order: Order = "big",
           byte_order: Order = "big") -> list[int]:
    """The registers that hold ``value`` as ``kind``, in the order written. Raises
    ``ValueError`` when the value does not fit the type."""
    try:
        data = struct.pack(">" + _CODE[kind], value)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit {kind}: {exc}") from None
    words = [_bytes_word(data[i:i + 2], byte_order) for i in range(0, len(data), 2)]
    return words if word_order == "big" else list(reversed(words))


def struct_code(kind: str) -> str:
    """The struct format character of a numeric type (read big-endian)."""
    return _CODE[kind]


def json_number(value: int | float) -> int | float | str:
    """A value JSON can carry: NaN and the infinities (a float register holding
    them, e.g. a sensor's "no reading") become the strings "NaN", "Infinity",
    "-Infinity" instead of a JSON null that hides them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _word_bytes(word: int, byte_order: Order) -> bytes:
    return word.to_bytes(2, "big" if byte_order == "big" else "little")


def _bytes_word(pair: bytes, byte_order: Order) -> int:
    return int.from_bytes(pair, "big" if byte_order == "big" else "little")
