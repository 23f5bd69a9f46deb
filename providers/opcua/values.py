"""OPC-UA values as JSON, and JSON as OPC-UA variants of a named type.

Read side (:func:`json_value`): numbers, booleans and strings as they are; a float
that is NaN or infinite as ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no
such numbers); a DateTime as ISO-8601; a ByteString as base64; a LocalizedText as
its text; a NodeId or QualifiedName as its string form; an array as a list; any
other structure as its ``str()`` (bounded). A string or byte string longer than
the limit raises ``ValueError``: the source keeps that notification raw instead.

Write side (:func:`variant`): ``value`` checked against ``variantType`` (range of
integer types, finite and in range for Float, a string for String...), so a bad
value is an error naming the type before anything is sent.
"""

from __future__ import annotations

import base64
import math
import struct
from datetime import UTC, datetime
from typing import Any

from asyncua import ua

_INT_RANGES: dict[str, tuple[int, int]] = {
    "SByte": (-(2**7), 2**7 - 1), "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1), "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1), "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1), "UInt64": (0, 2**64 - 1),
}
WRITABLE_TYPES = ("Boolean", *_INT_RANGES, "Float", "Double", "String", "DateTime", "ByteString")
FLOAT32_MAX = 3.4028234663852886e38


def json_value(value: Any, max_bytes: int) -> Any:
    """``value`` (as asyncua decoded it) as a JSON-able value."""
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value.encode()) > max_bytes:
            raise ValueError(f"a string of {len(value.encode())} bytes is over maxValueBytes "
                             f"({max_bytes})")
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, bytes | bytearray):
        if len(value) > max_bytes:
            raise ValueError(f"a byte string of {len(value)} bytes is over maxValueBytes "
                             f"({max_bytes})")
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, list | tuple):
        return [json_value(item, max_bytes) for item in value]
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.NodeId | ua.QualifiedName):
        return value.to_string()
    text = str(value)
    if len(text.encode()) > max_bytes:
        raise ValueError(f"a {type(value).__name__} of {len(text.encode())} bytes is over "
                         f"maxValueBytes ({max_bytes})")
    return text


def status_name(status: ua.StatusCode | None) -> str:
    return "Good" if status is None else status.name


def variant(value: Any, type_name: str) -> ua.Variant:
    """``value`` as a Variant of ``type_name`` (a list: an array of it); ValueError
    naming the type and the value when it does not fit."""
    if type_name not in WRITABLE_TYPES:
        raise ValueError(f"variantType {type_name!r} is not one of {', '.join(WRITABLE_TYPES)}")
    items = value if isinstance(value, list) else [value]
    converted = [_scalar(item, type_name) for item in items]
    return ua.Variant(converted if isinstance(value, list) else converted[0],
                      getattr(ua.VariantType, type_name))


def _scalar(value: Any, type_name: str) -> Any:
    if type_name == "Boolean":
        if not isinstance(value, bool):
            raise ValueError(f"a Boolean must be true or false, not {value!r}")
        return value
    if type_name in _INT_RANGES:
        return _integer(value, type_name)
    if type_name in ("Float", "Double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"a {type_name} must be a number, not {value!r}")
        if not math.isfinite(value) or (type_name == "Float" and abs(value) > FLOAT32_MAX):
            raise ValueError(f"{value!r} does not fit {type_name}")
        return float(value)
    if type_name == "DateTime":
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"a DateTime must be ISO-8601, not {value!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if type_name == "ByteString":
        try:
            return base64.b64decode(str(value), validate=True)
        except ValueError:
            raise ValueError("a ByteString must be base64") from None
    if not isinstance(value, str):
        raise ValueError(f"a String must be a string, not {value!r}")
    return value


def _integer(value: Any, type_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"an {type_name} must be a whole number, not {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole {type_name}")
    low, high = _INT_RANGES[type_name]
    if not low <= int(value) <= high:
        raise ValueError(f"{int(value)} does not fit {type_name} ({low}..{high})")
    return int(value)


def same_value(read: Any, written: ua.Variant) -> bool:
    """Whether a value read back is the one written: a Float is compared by its 32
    bits (21.1 reads back as 21.100000381...), a list element by element."""
    expected = written.Value
    if isinstance(expected, list):
        return (isinstance(read, list) and len(read) == len(expected)
                and all(_same(a, b, written.VariantType) for a, b in zip(read, expected,
                                                                         strict=True)))
    return _same(read, expected, written.VariantType)


def _same(read: Any, expected: Any, kind: ua.VariantType) -> bool:
    if kind == ua.VariantType.Float and isinstance(read, float):
        return bool(struct.pack("<f", read) == struct.pack("<f", expected))
    if isinstance(expected, bool) != isinstance(read, bool):
        return False
    return bool(read == expected)
