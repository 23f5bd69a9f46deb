"""GPIO lines of this host through the Linux GPIO character device and libgpiod v2
(the ``gpiod`` binding). A line written is kept requested as an output by this
process (libgpiod leaves a released line's value undefined), so it holds its value
until written again or the process ends; a line not held is read ``AS_IS``.

Only the chips named in ``GPIO_ALLOWED_CHIPS`` (``gpiochip0,gpiochip2``) may be
driven: event data names the chip, and may not reach any other device file. The
blocking ioctls run in a worker thread under the call's deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gpiod
from gpiod.line import Direction, Value

from framework.core import PermanentSourceError, TransientSourceError

CONSUMER = "connector-fleet"


class GpioRefusedError(PermanentSourceError):
    """The chip is not allowed, absent, or the line is busy or out of range."""


class GpioNotAllowedError(GpioRefusedError):
    """Event data named a chip this process may not drive."""


class LocalGpio:
    """``chips``: the allowed chip names; ``dev``: where they live (``/dev``)."""

    def __init__(self, chips: Iterable[str], *, dev: Path = Path("/dev")) -> None:
        self._chips = frozenset(chips)
        self._dev = dev
        self._held: dict[tuple[str, int], gpiod.LineRequest] = {}
        self._lock = threading.Lock()

    def check_allowed(self, chip: str) -> None:
        if chip not in self._chips:
            allowed = ", ".join(sorted(self._chips)) or "none: set GPIO_ALLOWED_CHIPS"
            raise GpioNotAllowedError(f"gpio chip {chip!r} is not allowed (allowed: {allowed})")

    def path_of(self, chip: str) -> str:
        self.check_allowed(chip)
        path = self._dev / chip
        if not path.exists():
            raise GpioRefusedError(f"gpio chip {chip}: {path} does not exist on this host")
        return str(path)

    async def write(self, chip: str, line: int, value: int, *, timeout_s: float) -> int:
        """Drive ``line`` to ``value``; the value it had before (None: unknown)."""
        path = self.path_of(chip)
        return await _in_thread(f"gpio {chip} line {line}", self._write, path, chip, line,
                                value, timeout_s=timeout_s)

    async def read(self, chip: str, line: int, *, timeout_s: float) -> int:
        path = self.path_of(chip)
        return await _in_thread(f"gpio {chip} line {line}", self._read, path, chip, line,
                                timeout_s=timeout_s)

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for request in held:
            request.release()

    def _write(self, path: str, chip: str, line: int, value: int) -> int:
        with self._lock:
            request = self._held.get((chip, line))
            if request is not None:
                before = int(request.get_value(line) == Value.ACTIVE)
                request.set_value(line, Value.ACTIVE if value else Value.INACTIVE)
                return before
            before = self._read_as_is(path, line)
            settings = gpiod.LineSettings(direction=Direction.OUTPUT,
                                          output_value=Value.ACTIVE if value else Value.INACTIVE)
            self._held[(chip, line)] = gpiod.request_lines(
                path, consumer=CONSUMER, config={line: settings})
            return before

    def _read(self, path: str, chip: str, line: int) -> int:
        with self._lock:
            request = self._held.get((chip, line))
            if request is not None:
                return int(request.get_value(line) == Value.ACTIVE)
            return self._read_as_is(path, line)

    @staticmethod
    def _read_as_is(path: str, line: int) -> int:
        settings = gpiod.LineSettings(direction=Direction.AS_IS)
        with gpiod.request_lines(path, consumer=CONSUMER, config={line: settings}) as request:
            return int(request.get_value(line) == Value.ACTIVE)


async def _in_thread(where: str, function: Any, *args: Any, timeout_s: float) -> int:
    try:
        async with asyncio.timeout(timeout_s):
            return int(await asyncio.to_thread(function, *args))
    except TimeoutError:
        raise TransientSourceError(f"{where}: no answer from the chip within {timeout_s} s") \
            from None
    except OSError as exc:  # EBUSY (another consumer), EINVAL (no such line)...
        raise GpioRefusedError(f"{where}: {exc.strerror or exc}") from None
