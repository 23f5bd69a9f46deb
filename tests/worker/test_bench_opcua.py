"""``connector-fleet bench sources --source opcua`` end to end with a tiny load: the
connector and the bare asyncua loop, over two fresh runs, figures as median
(min–max) with the load average shown."""

from __future__ import annotations

import os
import re

import pytest

from framework.testing import RedisServer
from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(300)
def test_bench_sources_reports_opcua_against_its_bare_loop(redis_server: RedisServer) -> None:
    result = installed_cli("bench", "sources", "--source", "opcua", "--events", "300",
                           "--runs", "2", "--redis-url", redis_server.url,
                           env=dict(os.environ), timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "load average (1 min) at the start of each:" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if line.strip().startswith("opcua |")]
    assert "subscribe" in row and "notifications/s" in row
    assert len(re.findall(RANGE, row)) == 3, row
