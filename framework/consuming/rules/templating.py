"""Templated step parameters: ``"{{ payload.value }}"`` filled in from the event.

A template is any JSON value; inside its strings, ``{{ expression }}`` is a
:mod:`framework.core.expressions` expression over the rule's names (``event``,
``payload``, ``steps``...). A string that is one placeholder and nothing else
keeps the expression's type (``"{{ payload.value }}"`` → ``8.9``, a number); a
placeholder inside text is rendered as text (``None`` as an empty string,
mappings and lists as JSON). Templates are compiled when the rules load, so a
syntax error names its position before any event arrives.

The keys named in ``url_keys`` (a call step's ``url``) are URL templates: each
placeholder's value is encoded for the part of the URL it stands in
(:mod:`framework.consuming.rules.url_template`).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from framework.consuming.rules.url_template import UrlSlot, encode_value, url_slots
from framework.core.errors import ExpressionError
from framework.core.expressions import Expression

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class _Path:
    """A placeholder that only reads a dotted path (``payload.value``, the common case):
    looked up directly, without the expression evaluator's set-up cost per call."""

    __slots__ = ("_parts", "source", "where")

    def __init__(self, source: str, *, where: str) -> None:
        self.source = source
        self.where = where
        self._parts = tuple(source.strip().split("."))

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        value: Any = names
        for depth, part in enumerate(self._parts):
            if not isinstance(value, Mapping) or part not in value:
                if depth == 0:
                    known = ", ".join(sorted(names))
                    message = f"unknown name {part!r} (known: {known})"
                else:
                    message = f"KeyError: {part!r}"
                raise ExpressionError(message, where=self.where, expression=self.source)
            value = value[part]
        return value


_Placeholder = Expression | _Path
_DOTTED_PATH = re.compile(r"^\s*[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\s*$")


@dataclass(frozen=True, slots=True)
class _Text:
    parts: tuple[str | _Placeholder, ...]


@dataclass(frozen=True, slots=True)
class _Whole:
    expression: _Placeholder


@dataclass(frozen=True, slots=True)
class _Url:
    parts: tuple[str | tuple[_Placeholder, UrlSlot], ...]
    source: str


class Template:
    """A compiled template; :meth:`render` evaluates it against the names."""

    def __init__(self, value: Any, *, where: str, url_keys: Collection[str] = ()) -> None:
        self.where = where
        self._compiled = _compile(value, where)
        if url_keys and isinstance(value, Mapping):
            for key in url_keys:
                if isinstance(value.get(key), str):
                    self._compiled[key] = _compile_url(value[key], f"{where}.{key}")

    def render(self, names: Mapping[str, Any]) -> Any:
        return _render(self._compiled, names)


def _compile(value: Any, where: str) -> Any:
    if isinstance(value, str):
        return _compile_text(value, where)
    if isinstance(value, Mapping):
        return {key: _compile(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_compile(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _compile_text(text: str, where: str) -> str | _Text | _Whole:
    parts: list[str | _Placeholder] = []
    cursor = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > cursor:
            parts.append(text[cursor:match.start()])
        parts.append(_expression(match.group(1), match.start(1), text, where))
        cursor = match.end()
    rest = text[cursor:]
    if "{{" in rest:
        raise ExpressionError("'{{' without a closing '}}'", where=where, expression=text,
                              position=cursor + rest.index("{{"))
    if rest:
        parts.append(rest)
    if all(isinstance(part, str) for part in parts):
        return text
    if len(parts) == 1 and not isinstance(parts[0], str):
        return _Whole(parts[0])
    return _Text(tuple(parts))


def _compile_url(text: str, where: str) -> str | _Url:
    compiled = _compile_text(text, where)
    if isinstance(compiled, str):
        return compiled
    parts = compiled.parts if isinstance(compiled, _Text) else (compiled.expression,)
    slots = iter(url_slots([part if isinstance(part, str) else None for part in parts],
                           where=where, text=text))
    return _Url(tuple(part if isinstance(part, str) else (part, next(slots))
                      for part in parts), text)


def _render_url(compiled: _Url, names: Mapping[str, Any]) -> str:
    rendered = []
    for part in compiled.parts:
        if isinstance(part, str):
            rendered.append(part)
            continue
        placeholder, slot = part
        rendered.append(encode_value(_as_text(placeholder.evaluate(names)), slot,
                                     where=placeholder.where, expression=compiled.source))
    return "".join(rendered)


def _expression(source: str, offset: int, text: str, where: str) -> _Placeholder:
    if not source.strip():
        raise ExpressionError("empty placeholder", where=where, expression=text, position=offset)
    if _DOTTED_PATH.match(source) and not any(
            keyword.iskeyword(part) for part in source.strip().split(".")):
        return _Path(source, where=where)
    try:
        return Expression(source, where=where)
    except ExpressionError as exc:
        # Positions count from the start of the whole string, not the placeholder.
        leading = len(source) - len(source.lstrip())
        position = None if exc.position is None else offset + leading + exc.position
        raise ExpressionError(exc.message, where=where, expression=text,
                              position=position) from None


def _render(compiled: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(compiled, _Url):
        return _render_url(compiled, names)
    if isinstance(compiled, _Whole):
        return _plain(compiled.expression.evaluate(names))
    if isinstance(compiled, _Text):
        return "".join(
            part if isinstance(part, str) else _as_text(part.evaluate(names))
            for part in compiled.parts
        )
    if isinstance(compiled, dict):
        return {key: _render(item, names) for key, item in compiled.items()}
    if isinstance(compiled, list):
        return [_render(item, names) for item in compiled]
    return compiled


def _plain(value: Any) -> Any:
    """Plain dicts and lists (the evaluator hands back its attribute-reading records)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | tuple | bool):
        return orjson.dumps(value, default=str).decode()
    return str(value)
