"""Match conditions of a rule: which events it is for.

A :class:`Match` holds when the event's stream is one of the rule's, its
source and type are among the accepted ones (when given), every
:class:`FieldCondition` on a dotted path (``payload.tags``) holds, and the
``if`` expression is true. A missing field or a comparison between different
types (``"abc" > 3``) does not match; it is not an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framework.consuming.events import InboundEvent
from framework.core.expressions import Expression

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists",
             "matches")
_MISSING = object()


@dataclass(frozen=True)
class FieldCondition:
    path: tuple[str, ...]
    operator: str
    operand: Any

    def holds(self, event: Mapping[str, Any]) -> bool:
        value = _lookup(event, self.path)
        if self.operator == "exists":
            return (value is not _MISSING) is bool(self.operand)
        if value is _MISSING:
            return False
        try:
            return _compare(self.operator, value, self.operand)
        except TypeError:
            return False  # "abc" > 3: the event does not have the expected shape


@dataclass(frozen=True)
class Match:
    streams: frozenset[str]
    sources: frozenset[str] | None = None
    types: frozenset[str] | None = None
    fields: tuple[FieldCondition, ...] = ()
    condition: Expression | None = None

    def matches(self, event: InboundEvent, names: Mapping[str, Any]) -> bool:
        """Raises ExpressionError if ``if`` fails on this event (a missing key...)."""
        if event.stream not in self.streams:
            return False
        if self.sources is not None and event.source not in self.sources:
            return False
        if self.types is not None and event.type not in self.types:
            return False
        record = names["event"]
        if not all(condition.holds(record) for condition in self.fields):
            return False
        return self.condition is None or self.condition.is_true(names)


def _lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _compare(operator: str, value: Any, operand: Any) -> bool:
    if operator == "eq":
        return bool(value == operand)
    if operator == "ne":
        return bool(value != operand)
    if operator == "gt":
        return bool(value > operand)
    if operator == "gte":
        return bool(value >= operand)
    if operator == "lt":
        return bool(value < operand)
    if operator == "lte":
        return bool(value <= operand)
    if operator == "in":
        return value in operand
    if operator == "not_in":
        return value not in operand
    if operator == "contains":
        return isinstance(value, list | str | dict) and operand in value
    return isinstance(value, str) and re.search(operand, value) is not None
