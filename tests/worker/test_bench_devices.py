"""``bench devices`` end to end with a tiny fleet, through the installed command line:
both systems in each run, every absence found, figures as median (min–max)."""

from __future__ import annotations

import os
import re

import pytest

from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(200)
def test_bench_devices_reports_the_registry_the_timer_baseline_and_an_ota_wave() -> None:
    result = installed_cli("bench", "devices", "--devices", "2000", "--window", "1",
                           "--ota-devices", "20", "--runs", "2", env=dict(os.environ),
                           timeout_s=180)
    assert result.returncode == 0, result.stderr
    assert "bench devices: 2 run(s), each in fresh processes" in result.stdout
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()
            if line.strip().startswith("2,000 |")}
    assert set(rows) == {"registry+watchdog", "timer-per-device"}
    for row in rows.values():
        assert len(re.findall(RANGE, row)) >= 5, row
        assert row.rstrip().endswith("20 (20–20)"), row  # every absence found, each run
    ota = {line.split("|")[1].strip(): line for line in result.stdout.splitlines()
           if line.strip().startswith("20 |")}
    assert set(ota) == {"ota wave (executor)", "bare request/response"}
    assert all(re.search(RANGE, line) for line in ota.values()), ota
