"""The arithmetic operators of expressions, with integer results bounded in size.

simpleeval bounds the exponent (``10 ** 4000000`` passes its check and takes
seconds) but not the size of a product. Here ``**``, ``*`` and ``<<`` estimate the
size of an integer result from the operands' bit lengths *before* computing it,
and refuse anything over :data:`MAX_INTEGER_BITS`; every other integer operator
grows a result by at most one bit. Sequence repetition keeps simpleeval's length
check.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from simpleeval import DEFAULT_OPERATORS, NumberTooHigh, safe_mult

# 4096 bits: about 1,233 decimal digits, far above any quantity an event carries;
# computing with numbers this size stays in the microseconds.
MAX_INTEGER_BITS = 4096


def _too_large(bits: int, symbol: str) -> NumberTooHigh:
    return NumberTooHigh(
        f"the result of {symbol} would be larger than {MAX_INTEGER_BITS} bits (about {bits} bits)"
    )


def _integers(*values: Any) -> bool:
    # bool is an int too: True ** 10**9 is harmless and bounded below anyway.
    return all(isinstance(value, int) for value in values)


def bounded_power(base: Any, exponent: Any) -> Any:
    if _integers(base, exponent) and exponent > 0 and abs(base) > 1:
        bits = (abs(base).bit_length() - 1) * exponent
        if bits > MAX_INTEGER_BITS:
            raise _too_large(bits, "**")
    return operator.pow(base, exponent)


def bounded_multiply(left: Any, right: Any) -> Any:
    if _integers(left, right):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INTEGER_BITS + 1:
            raise _too_large(bits, "*")
        return left * right
    return safe_mult(left, right)


def bounded_shift(value: Any, places: Any) -> Any:
    if _integers(value, places) and value and places > 0:
        bits = abs(value).bit_length() + places
        if bits > MAX_INTEGER_BITS:
            raise _too_large(bits, "<<")
    return operator.lshift(value, places)


OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    **DEFAULT_OPERATORS,
    ast.Pow: bounded_power,
    ast.Mult: bounded_multiply,
    ast.LShift: bounded_shift,
}
