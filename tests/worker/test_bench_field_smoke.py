"""``bench field`` end to end with tiny sizes, through the installed command line: each
run in fresh processes (a private Redis, the MAVLink vehicle emulator, a private
Mosquitto), both capabilities and their bare loops reported as median (min–max)."""

from __future__ import annotations

import os
import re

import pytest

from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(300)
def test_bench_field_reports_both_capabilities_and_their_bare_loops() -> None:
    result = installed_cli("bench", "field", "--missions", "5", "--waypoints", "3",
                           "--alarms", "3", "--runs", "2", env=dict(os.environ), timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "bench field: 2 run(s), each in fresh processes" in result.stdout
    assert "load average (1 min) at the start of each:" in result.stdout
    rows = {line.split("|")[0].strip(): line for line in result.stdout.splitlines()
            if line.count("|") == 4}
    for capability in ("drone_waypoint", "alarm_trigger"):
        assert len(re.findall(RANGE, rows[capability])) == 3, rows[capability]
