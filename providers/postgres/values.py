"""Column values: pgoutput sends each in PostgreSQL's text output; these become
JSON values by the column's type (the table in docs/cdc.md).

Exact types stay exact: ``numeric`` is a string (a float would round it), and so
are ``NaN``/``Infinity`` of the float types (JSON has no such numbers). Dates and
times are PostgreSQL's ISO text in UTC (the session sets ``DateStyle=ISO`` and
``TimeZone=UTC``), ``bytea`` is ``\\x`` hex, arrays and every other type are their
text literal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

BOOL, INT8, INT2, INT4, OID = 16, 20, 21, 23, 26
FLOAT4, FLOAT8 = 700, 701
JSON, JSONB = 114, 3802


def _float(text: str) -> float | str:
    value = float(text)
    return value if value - value == 0 else text  # NaN and +-Infinity stay text


def _json(text: str) -> Any:
    return orjson.loads(text)


_CONVERTERS: dict[int, Callable[[str], Any]] = {
    BOOL: lambda text: text == "t",
    INT2: int, INT4: int, INT8: int, OID: int,
    FLOAT4: _float, FLOAT8: _float,
    JSON: _json, JSONB: _json,
}


def column_value(type_oid: int, text: str) -> Any:
    """The JSON value of one column's text output."""
    convert = _CONVERTERS.get(type_oid)
    return text if convert is None else convert(text)
