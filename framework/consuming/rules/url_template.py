"""Placeholders in a URL template, rendered per URL part.

A template's literal text fixes where each placeholder stands, and its value is
encoded for that part, so event data cannot change the URL's structure:

* **path**: percent-encoded as (part of) one segment: ``/``, ``?``, ``#`` and ``%``
  are encoded, so ``../../admin`` stays inside its segment; a placeholder filling a
  whole segment may not be empty, ``.`` or ``..`` (it would drop or climb a segment);
* **query** and **fragment**: percent-encoded as a value (``&``, ``=``, ``+``, ``#``);
* **host** (after ``scheme://``): kept as is, but only letters, digits, ``.``,
  ``-``, ``_``, ``:`` and ``[]`` (a host, port or IPv6 address), so a value cannot
  add a path, credentials or another host;
* a placeholder that **starts** the template supplies the whole URL or its origin
  (``{{ payload.url }}``, ``{{ base }}/items/...``): inserted as is; the host it
  names must then pass the call's host allow-list (``allowHosts``), checked when the
  request is made.

A placeholder inside the scheme (``http{{ s }}://``) is refused when the rules load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote

from framework.core.errors import ExpressionError

_HOST_VALUE = re.compile(r"^[A-Za-z0-9.\-_:\[\]]+$")


class UrlPart(Enum):
    ORIGIN = "origin"
    HOST = "host"
    PATH = "path"
    QUERY = "query"
    FRAGMENT = "fragment"


@dataclass(frozen=True, slots=True)
class UrlSlot:
    """Where one placeholder stands in its URL template."""

    part: UrlPart
    # A path placeholder that fills a segment alone (``/items/{{ id }}/``).
    whole_segment: bool = False


_AFTER_HOST = {"/": UrlPart.PATH, "?": UrlPart.QUERY, "#": UrlPart.FRAGMENT}


def _advance(state: str | UrlPart, text: str) -> str | UrlPart:
    """The part the URL is in after the literal ``text``."""
    if state == "scheme":
        scheme_end = text.find("://")
        if scheme_end < 0:
            return state
        state, text = UrlPart.HOST, text[scheme_end + 3 :]
    for char in text:
        leaves_host = state in (UrlPart.HOST, UrlPart.ORIGIN) and char in _AFTER_HOST
        if leaves_host or (state == UrlPart.PATH and char in "?#"):
            state = _AFTER_HOST[char]
        elif state == UrlPart.QUERY and char == "#":
            state = UrlPart.FRAGMENT
    return state


def url_slots(literals: list[str | None], *, where: str, text: str) -> list[UrlSlot]:
    """The slot of each placeholder (``None`` in ``literals``, the template's parts in
    order); ExpressionError for a placeholder inside the scheme."""
    slots: list[UrlSlot] = []
    state: str | UrlPart = "scheme"
    for index, literal in enumerate(literals):
        if literal is not None:
            state = _advance(state, literal)
            continue
        if index == 0:
            slots.append(UrlSlot(UrlPart.ORIGIN))
            state = UrlPart.ORIGIN
            continue
        if not isinstance(state, UrlPart):
            raise ExpressionError(
                "a placeholder inside the URL scheme (write the scheme "
                "out, or let one placeholder start the URL)",
                where=where,
                expression=text,
            )
        whole = state == UrlPart.PATH and _alone(literals, index)
        slots.append(UrlSlot(state, whole_segment=whole))
    return slots


def _alone(literals: list[str | None], index: int) -> bool:
    before, after = literals[index - 1], literals[index + 1 : index + 2]
    follows = after[0] if after else ""
    return (
        isinstance(before, str)
        and before.endswith("/")
        and (follows == "" or (isinstance(follows, str) and follows[0] in "/?#"))
    )


def encode_value(value: str, slot: UrlSlot, *, where: str, expression: str) -> str:
    """``value`` encoded for its slot; ExpressionError if it cannot stand there."""
    if slot.part == UrlPart.ORIGIN:
        return value
    if slot.part == UrlPart.HOST:
        if not _HOST_VALUE.match(value):
            raise _refused(f"the value {_shown(value)} is not a host name", where, expression)
        return value
    if slot.whole_segment and value in ("", ".", ".."):
        raise _refused(
            f"the value {_shown(value)} would remove or climb a path segment", where, expression
        )
    return quote(value, safe="")


def _refused(message: str, where: str, expression: str) -> ExpressionError:
    return ExpressionError(f"URL placeholder: {message}", where=where, expression=expression)


def _shown(value: str) -> str:
    # Event data: enough to recognise it, not a whole payload in every log line.
    return repr(value if len(value) <= 80 else value[:77] + "...")
