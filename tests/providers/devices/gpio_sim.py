"""A simulated GPIO chip from the kernel's ``gpio-sim`` module (configfs): a real
``/dev/gpiochipN`` whose output lines are read back from sysfs. Needs root, configfs
mounted on /sys/kernel/config and the gpio-sim module; :func:`gpio_sim_missing` says
why a machine cannot run it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CONFIGFS = Path("/sys/kernel/config/gpio-sim")


def gpio_sim_missing() -> str | None:
    """None when gpio-sim can be used here, else why not."""
    if os.geteuid() != 0:
        return "gpio-sim needs root (configfs)"
    if not Path("/sys/kernel/config").is_dir():
        return ("this kernel has no configfs (/sys/kernel/config absent), so no gpio-sim: "
                "the local gpio_write mode cannot be driven on this machine")
    if not CONFIGFS.is_dir():
        return ("gpio-sim is not loaded (/sys/kernel/config/gpio-sim absent; modprobe "
                "gpio-sim): the local gpio_write mode cannot be driven on this machine")
    return None


@dataclass(frozen=True)
class SimChip:
    chip: str  # gpiochipN
    sysfs: Path  # /sys/devices/platform/<dev>/<chip>

    def output(self, line: int) -> int:
        """What the line is driven to, seen from the simulated device's side."""
        return int((self.sysfs / f"sim_gpio{line}" / "value").read_text().strip())


@contextmanager
def gpio_sim(lines: int = 8) -> Iterator[SimChip]:
    root = CONFIGFS / f"fleet-{uuid.uuid4().hex[:8]}"
    bank = root / "bank0"
    root.mkdir()
    try:
        bank.mkdir()
        (bank / "num_lines").write_text(str(lines))
        (root / "live").write_text("1")
        chip = (bank / "chip_name").read_text().strip()
        device = (root / "dev_name").read_text().strip()
        yield SimChip(chip, Path("/sys/devices/platform") / device / chip)
    finally:
        if (root / "live").exists():
            (root / "live").write_text("0")
        if bank.exists():
            bank.rmdir()
        root.rmdir()
