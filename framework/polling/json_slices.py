"""JSON read without holding the event loop: a big body is decoded a slice at a time.

An API's list of 100,000 items is one body of tens of MB; decoding it in one call
holds the loop for seconds on a busy machine, and the lease renewals of every
connector of the process wait. :func:`loads_in_slices` walks the body's outer two
levels itself (the document, and the members of a top-level object) and hands
each element of an array found there to the C decoder of the standard library,
yielding to the loop once a slice's time is spent (:class:`LoopSlices`).
Everything deeper (an item) is decoded in one call, as it is small.

Errors are :class:`ValueError` with the position; nesting deeper than the
interpreter allows is one too (not a :class:`RecursionError`).
"""

from __future__ import annotations

import json
import re
from _json import make_scanner, scanstring
from typing import Any

from framework.polling.loop_slices import LoopSlices

# Smaller bodies are decoded in one call: a few ms on a loaded machine.
SLICE_CHARS = 64 * 1024
_SPACE = re.compile(r"[ \t\n\r]*")
# The standard library's C decoder (what json.loads uses), one value at a time.
_SCAN_ONCE = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # duck-typed context


async def loads_in_slices(text: str) -> Any:
    """The JSON value of ``text`` (see module docstring)."""
    reader = _Reader(text)
    try:
        value = await reader.value(outer=True)
        reader.skip_space()
        if reader.index != len(text):
            raise reader.error("Extra data")
    except RecursionError:
        raise ValueError(f"nested too deep (at char {reader.index})") from None
    return value


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0
        self._slices = LoopSlices()

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.index)
        self.index = match.end() if match else self.index

    def error(self, what: str) -> json.JSONDecodeError:
        return json.JSONDecodeError(what, self.text, self.index)

    async def value(self, *, outer: bool) -> Any:
        """An array here is read element by element; an object only when ``outer``."""
        self.skip_space()
        opening = self.text[self.index : self.index + 1]
        if opening == "[":
            return await self._array()
        if opening == "{" and outer:
            return await self._object()
        return await self._scan()

    async def _scan(self) -> Any:
        self.skip_space()
        try:
            value, self.index = _SCAN_ONCE(self.text, self.index)
        except StopIteration:
            raise self.error("Expecting value") from None
        await self._slices.pause_if_due()
        return value

    async def _array(self) -> list[Any]:
        self.index += 1
        items: list[Any] = []
        if self._next_is("]"):
            return items
        while True:
            items.append(await self._scan())
            if self._next_is("]"):
                return items
            self._expect(",")

    async def _object(self) -> dict[str, Any]:
        self.index += 1
        members: dict[str, Any] = {}
        if self._next_is("}"):
            return members
        while True:
            self.skip_space()
            if self.text[self.index : self.index + 1] != '"':
                raise self.error("Expecting property name enclosed in double quotes")
            key, self.index = scanstring(self.text, self.index + 1)
            self._expect(":")
            members[key] = await self.value(outer=False)
            if self._next_is("}"):
                return members
            self._expect(",")

    def _next_is(self, closing: str) -> bool:
        self.skip_space()
        if self.text[self.index : self.index + 1] == closing:
            self.index += 1
            return True
        return False

    def _expect(self, separator: str) -> None:
        self.skip_space()
        if self.text[self.index : self.index + 1] != separator:
            raise self.error(f"Expecting {separator!r} delimiter")
        self.index += 1
