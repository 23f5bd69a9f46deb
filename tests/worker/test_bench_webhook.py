"""``connector-fleet bench webhook`` end to end with tiny figures, through the installed
command line: both systems measured in every run, figures as median (min–max)."""

from __future__ import annotations

import os
import re

import pytest

from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(300)
def test_bench_webhook_reports_the_receiver_and_the_bare_handler_over_runs() -> None:
    result = installed_cli("bench", "webhook", "--concurrency", "2", "--duration", "0.5",
                           "--runs", "2", env=dict(os.environ), timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "bench webhook: 2 run(s), each in fresh processes" in result.stdout
    for system in ("connector-fleet", "bare-aiohttp"):
        (row,) = [line for line in result.stdout.splitlines()
                  if line.strip().startswith(f"{system} |")]
        assert len(re.findall(RANGE, row)) == 4, row  # requests/s, p50, p99, failed
        assert row.rstrip().endswith("| 0 (0–0)"), row  # no request failed
    assert "best requests/s with median p99 < 50 ms:" in result.stdout
