"""Safe expressions for rule conditions, preconditions and postconditions.

Built on simpleeval (no Python ``eval``: no attribute access to dunders, no
imports, bounded string sizes, and integer results bounded to
:data:`MAX_INTEGER_BITS` by :mod:`framework.core.bounded_arithmetic`). Names
are the variables a caller passes (``event``, ``payload``, ``params``, ``state``...); dotted access
reads mapping keys, so ``payload.value > 8.5`` works on plain dicts.

Errors are :class:`~framework.core.errors.ExpressionError` naming who owns the
expression (``where``) and, for syntax errors, the position.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from simpleeval import (
    EvalWithCompoundTypes,
    InvalidExpression,
    NameNotDefined,
)

from framework.core.bounded_arithmetic import MAX_INTEGER_BITS, OPERATORS
from framework.core.errors import ExpressionError

__all__ = ["MAX_INTEGER_BITS", "Expression"]

_FUNCTIONS: dict[str, Any] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "lower": str.lower,
    "upper": str.upper,
}


class _Record(dict[str, Any]):
    """A mapping whose keys also read as attributes (``payload.nodeId``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _wrap(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _Record({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_wrap(v) for v in value]
    return value


def _parse(source: str) -> ast.AST:
    module = ast.parse(source.strip())
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Expr):
        raise SyntaxError("expected one expression", ("<expression>", 1, 1, source))
    return module.body[0]


class Expression:
    """A parsed expression: parse once (errors at load time), evaluate many times."""

    def __init__(self, source: str, *, where: str) -> None:
        self.source = source
        self.where = where
        try:
            self._tree = _parse(source)
        except SyntaxError as exc:
            offset = (exc.offset - 1) if exc.offset else None
            raise ExpressionError(
                f"syntax error: {exc.msg}", where=where, expression=source, position=offset
            ) from None

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        evaluator = EvalWithCompoundTypes(
            operators=OPERATORS,
            functions=_FUNCTIONS,
            names={key: _wrap(value) for key, value in names.items()},
        )
        try:
            return evaluator.eval(self.source.strip(), previously_parsed=self._tree)
        except NameNotDefined as exc:
            raise ExpressionError(
                f"unknown name {exc.name!r} (known: {', '.join(sorted(names))})",
                where=self.where,
                expression=self.source,
            ) from None
        except (
            InvalidExpression,
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
            ZeroDivisionError,
            IndexError,
            OverflowError,  # a float out of range: 10.0 ** 400
        ) as exc:
            raise ExpressionError(
                f"{type(exc).__name__}: {exc}", where=self.where, expression=self.source
            ) from None

    def is_true(self, names: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(names))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"
