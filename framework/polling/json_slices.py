"""JSON read without holding the event loop: a big body is decoded a slice at a time,
from the chunks it arrived in.

An API's list of 100,000 items is one body of tens of MB; decoding it in one call
holds the loop for seconds on a busy machine, and the lease renewals of every
connector of the process wait. So does any single step over the whole body: joining
its chunks into one ``bytes``, decoding it into one ``str`` (each a copy of tens of
MB, and the first touch of that much fresh memory). :func:`loads_in_slices`
therefore never makes one piece of the body: it reads a *window* of text, decoded
from the chunks about :data:`PIECE_BYTES` at a time, and slides it along as the
values in it are consumed.

It walks the body's outer two levels itself (the document, and the members of a
top-level object) and hands each element of an array found there to the C decoder
of the standard library, yielding to the loop once a slice's time is spent
(:class:`LoopSlices`). Everything deeper (an item) is decoded in one call, as it is
small. A value cut by the end of the window is decoded again once the window holds
more text; the window at least doubles each time, so an item bigger than a piece
costs a few extra scans of itself, not one per piece.

A UTF-8 byte order mark at the start is skipped. Errors are :class:`ValueError`
with the position in characters; nesting deeper than the interpreter allows is one
too (not a :class:`RecursionError`).
"""

from __future__ import annotations

import codecs
import json
import re
from _json import make_scanner, scanstring
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from framework.polling.loop_slices import LoopSlices

# Text is decoded and the window extended this many bytes at a time.
PIECE_BYTES = 64 * 1024
# A decode error this close to the window's end may only mean the text goes on: the
# longest token that fails before its end when cut is "-Infinity" (a "\uXXXX"
# escape fails at its backslash).
_CUT_MARGIN_CHARS = 10
_SPACE = re.compile(r"[ \t\n\r]*")
# The standard library's C decoder (what json.loads uses), one value at a time.
_SCAN_ONCE = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # duck-typed context

T = TypeVar("T")


async def loads_in_slices(chunks: Sequence[bytes], *, piece_bytes: int = PIECE_BYTES) -> Any:
    """The JSON value of the UTF-8 body made of ``chunks`` (see module docstring)."""
    reader = _Reader(_pieces(chunks, piece_bytes))
    try:
        value = await reader.value(outer=True)
        if reader.peek() != "":
            raise reader.error("Extra data")
    except RecursionError:
        raise ValueError(f"nested too deep (at char {reader.position})") from None
    return value


def _pieces(chunks: Sequence[bytes], piece_bytes: int) -> Iterator[memoryview]:
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), piece_bytes):
            yield view[start : start + piece_bytes]


class _Reader:
    """A window of decoded text over the body: ``text[index:]`` is what is not read
    yet, ``base`` how many characters came before the window."""

    def __init__(self, pieces: Iterator[memoryview]) -> None:
        self._pieces = pieces
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._bytes_read = 0
        self._exhausted = False
        self._slices = LoopSlices()
        self.text = ""
        self.index = 0
        self.base = 0

    @property
    def position(self) -> int:
        return self.base + self.index

    def error(self, what: str, index: int | None = None) -> ValueError:
        at = self.base + (self.index if index is None else index)
        return ValueError(f"{what} (at char {at})")

    def _extend(self) -> bool:
        """Drop what was read and add at least as much text as is left (at least
        one piece); False when the body has no more."""
        if self._exhausted:
            return False
        self.text, self.base, self.index = self.text[self.index :], self.base + self.index, 0
        wanted = max(len(self.text), 1)
        added: list[str] = []
        while wanted > 0 and not self._exhausted:
            piece = next(self._pieces, None)
            text = self._decode(piece)
            added.append(text)
            wanted -= len(text)
        self.text += "".join(added)
        return True

    def _decode(self, piece: memoryview | None) -> str:
        try:
            if piece is None:
                self._exhausted = True
                return self._decoder.decode(b"", final=True)
            self._bytes_read += len(piece)
            return self._decoder.decode(piece)
        except UnicodeDecodeError as exc:
            at = self._bytes_read - (len(piece) if piece is not None else 0) + exc.start
            raise ValueError(f"not UTF-8: {exc.reason} (at byte {at})") from None

    def peek(self) -> str:
        """The next character that is not white space ("" at the end of the body)."""
        while True:
            match = _SPACE.match(self.text, self.index)
            self.index = match.end() if match else self.index
            if self.index < len(self.text) or not self._extend():
                return self.text[self.index : self.index + 1]

    def _decoded(self, decode: Callable[[str, int], tuple[T, int]]) -> T:
        """``decode(text, index)``'s value, once the window holds all of it."""
        while True:
            try:
                value, end = decode(self.text, self.index)
            except StopIteration as exc:  # no value where one was due, perhaps nested
                if self._was_cut("Expecting value", exc.value) and self._extend():
                    continue
                raise self.error("Expecting value", exc.value) from None
            except json.JSONDecodeError as exc:
                if self._was_cut(exc.msg, exc.pos) and self._extend():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            # A number ending near the window's end may go on after it ("1.5" of
            # "1.5e3"); decoding a value again is cheap and seldom needed.
            if end >= len(self.text) - _CUT_MARGIN_CHARS and self._extend():
                continue
            self.index = end
            return value

    def _was_cut(self, what: str, index: int) -> bool:
        return what.startswith("Unterminated string") \
            or index >= len(self.text) - _CUT_MARGIN_CHARS

    async def value(self, *, outer: bool) -> Any:
        """An array here is read element by element; an object only when ``outer``."""
        opening = self.peek()
        if opening == "[":
            return await self._array()
        if opening == "{" and outer:
            return await self._object()
        return await self._scan()

    async def _scan(self) -> Any:
        self.peek()
        value = self._decoded(_SCAN_ONCE)
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
            if self.peek() != '"':
                raise self.error("Expecting property name enclosed in double quotes")
            self.index += 1
            key: str = self._decoded(_key)
            self._expect(":")
            members[key] = await self.value(outer=False)
            if self._next_is("}"):
                return members
            self._expect(",")

    def _next_is(self, closing: str) -> bool:
        if self.peek() == closing:
            self.index += 1
            return True
        return False

    def _expect(self, separator: str) -> None:
        if self.peek() != separator:
            raise self.error(f"Expecting {separator!r} delimiter")
        self.index += 1


def _key(text: str, index: int) -> tuple[str, int]:
    """A member name after its opening quote, as ``scanstring`` reads it; its end is
    past the closing quote, so it is never mistaken for a value cut by the window."""
    key, end = scanstring(text, index)
    return key, end
