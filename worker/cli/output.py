"""Where commands write, and how: lines, JSON, tables; and how they ask to confirm."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

Confirm = Callable[[str], bool]


def ask_on_terminal(question: str) -> bool:
    """Ask on the terminal; without one (a script, a pipe) the answer is no."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def always_yes(_: str) -> bool:
    return True


@dataclass
class Console:
    """Where commands write: results to ``out``, problems to ``err``."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def json(self, value: Any) -> None:
        self.line(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())

    def problem(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Columns as wide as their widest cell, two spaces apart."""
        widths = [max(len(str(cell)) for cell in column)
                  for column in zip(header, *rows, strict=False)]
        for row in (header, *rows):
            self.line("  ".join(str(cell).ljust(width)
                                for cell, width in zip(row, widths, strict=True)).rstrip())


def seconds(ttl_ms: int | None) -> str:
    """A TTL in milliseconds as seconds (``12.5s``), ``-`` if there is none."""
    return "-" if ttl_ms is None else f"{ttl_ms / 1000:.1f}s"
