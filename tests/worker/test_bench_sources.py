"""``bench sources`` end to end with tiny sizes, through the installed command line:
the modbus row against its bare loop, in fresh processes, over runs."""

from __future__ import annotations

import os
import re

import pytest

from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(300)
def test_bench_sources_reports_modbus_registers_against_the_bare_loop() -> None:
    result = installed_cli("bench", "sources", "--sources", "modbus", "--registers", "50",
                           "--polls", "3", "--runs", "2", env=dict(os.environ),
                           timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "bench sources: 2 run(s), each in fresh processes" in result.stdout
    assert "load average (1 min) at the start of each:" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith("modbus |")]
    assert [row.split("|")[1].strip() for row in rows] == ["every-poll", "change"]
    for row in rows:
        assert "registers/s" in row and len(re.findall(RANGE, row)) == 3, row
