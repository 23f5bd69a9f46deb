"""The ``bench devices`` OTA row's one run works end to end on a small fleet (the
figures themselves come from ``bench``, never from a timed test)."""

from __future__ import annotations

import pytest

from worker.bench.devices_ota import measure


@pytest.mark.slow
def test_one_run_of_the_ota_wave_bench_gives_both_rows() -> None:
    rows = measure({"devices": 40})
    assert [row["system"] for row in rows] == ["ota wave (executor)", "bare request/response"]
    assert all(row["devices"] == 40 and row["devices_per_s"] > 0 for row in rows)
