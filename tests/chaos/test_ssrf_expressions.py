"""Hostile expressions: integer results too large to compute cheaply are refused
before they are computed (issue 13, item 11e)."""

from __future__ import annotations

import pytest

from framework.core.errors import ExpressionError
from framework.core.expressions import MAX_INTEGER_BITS, Expression

HUGE = [
    "10 ** 4000000",
    "2 ** 4000000",
    "(10 ** 1000) * (10 ** 1000)",
    "payload.n ** 5000",
    "payload.big * payload.big",
    "1 << 10000",
    "payload.big << 10",
    "-(10 ** 2000)",
    "10.0 ** 400",
]


@pytest.mark.parametrize("source", HUGE)
def test_an_integer_result_over_the_bound_is_an_expression_error_naming_where(source: str) -> None:
    expression = Expression(source, where="rule r, match.if")
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate({"payload": {"n": 10, "big": 2 ** (MAX_INTEGER_BITS - 5)}})
    assert "rule r, match.if" in str(caught.value)
    assert source in str(caught.value)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("2 ** 64", 2**64),
        ("10 ** 300 // 10 ** 299", 10),
        ("payload.n * 3 + 1", 31),
        ("1 << 62", 1 << 62),
        ("2.5 ** 2", 6.25),
        ("-2 ** 3", -8),
        ("2 ** -2", 0.25),
        ("'ab' * 3", "ababab"),
    ],
)
def test_ordinary_arithmetic_still_works(source: str, value: object) -> None:
    assert Expression(source, where="w").evaluate({"payload": {"n": 10}}) == value


def test_the_bound_is_about_4096_bits() -> None:
    assert Expression("2 ** 4000", where="w").evaluate({}) == 2**4000
    with pytest.raises(ExpressionError, match="larger than"):
        Expression("2 ** 5000", where="w").evaluate({})
