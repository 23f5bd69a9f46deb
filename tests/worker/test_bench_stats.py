"""The benchmarks' shared reporting: each figure as median (min–max) of its runs,
rows matched across runs, yes/no figures counted, and the rows of ``bench consume``
computed from completion records (latency, kept up)."""

from __future__ import annotations

import pytest

from worker.bench.load import KEPT_UP_LAG_MS, latency_row, throughput_row
from worker.bench.repeat import Repeated, repeat_in_fresh_processes
from worker.bench.stats import Spread, summarize


def test_a_spread_is_the_minimum_median_and_maximum_of_the_runs() -> None:
    spread = Spread.of([9_300.0, 10_676.0, 10_582.0])

    assert (spread.low, spread.median, spread.high, spread.runs) == (9_300, 10_582, 10_676, 3)
    assert spread.format() == "10,582 (9,300–10,676)"
    assert spread.scaled(1000).format() == "10,582,000 (9,300,000–10,676,000)"


def test_a_single_run_shows_its_value_and_an_even_count_the_middle_mean() -> None:
    assert Spread.of([3.14159]).format(".2f") == "3.14"
    assert Spread.of([1.0, 2.0, 4.0, 10.0]).median == 3.0


def test_no_value_to_summarize_is_an_error_naming_the_figure() -> None:
    with pytest.raises(ValueError, match="p99_ms"):
        Spread.of([], "p99_ms")


def test_rows_are_matched_across_runs_by_their_naming_fields() -> None:
    runs = [
        [
            {"system": "a", "rate": 10, "p99_ms": 1.0, "kept_up": True},
            {"system": "b", "rate": 10, "p99_ms": 50.0, "kept_up": False},
        ],
        [
            {"system": "b", "rate": 10, "p99_ms": 70.0, "kept_up": True},
            {"system": "a", "rate": 10, "p99_ms": 3.0, "kept_up": True},
        ],
        [{"system": "a", "rate": 10, "p99_ms": 2.0, "kept_up": False}],  # b failed here
    ]

    a, b = summarize(runs, ("system", "rate"))

    assert a.key == {"system": "a", "rate": 10}
    assert a.cell("p99_ms", ".1f") == "2.0 (1.0–3.0)"
    assert a.cell("kept_up") == "2/3"
    assert b.cell("p99_ms") == "60 (50–70)"  # two runs: the median of two
    assert b.cell("kept_up") == "1/2"
    assert a.cell("absent") == "-"


def test_a_figure_no_run_gave_is_left_out_not_zero() -> None:
    runs = [[{"system": "limit", "ours_vs": None}], [{"system": "limit", "ours_vs": None}]]

    (row,) = summarize(runs, ("system",))

    assert row.cell("ours_vs") == "-"


def test_the_description_shows_the_load_average_at_the_start_of_each_run() -> None:
    repeated = Repeated(
        "publish", [[], [], []], [(1.75, 1.0, 0.5), (2.1, 1.2, 0.6), (1.8, 1.1, 0.5)]
    )

    text = repeated.describe()

    assert "3 run(s), each in fresh processes" in text
    assert "1.75, 2.10, 1.80" in text
    assert "median (min–max)" in text


def test_fewer_than_one_run_is_refused() -> None:
    with pytest.raises(ValueError, match="--runs must be at least 1"):
        repeat_in_fresh_processes("publish", {}, 0, timeout_s=1)


def test_a_worker_that_drains_right_after_the_last_send_kept_up() -> None:
    sent = [1_000.0 + i for i in range(100)]
    records = [(s + 2.0 + (40.0 if i == 99 else 0.0), s) for i, s in enumerate(sent)]

    row = latency_row("x", 1_000, 998.0, records)

    assert row["kept_up"] is True
    assert row["p50_ms"] == pytest.approx(2.0)
    assert row["p99_ms"] > 2.0
    assert row["achieved_rate"] == 998.0


def test_a_worker_whose_backlog_outlasts_the_sending_did_not_keep_up() -> None:
    sent = [1_000.0 + i for i in range(100)]
    # Half the rate: the backlog grows for the whole run.
    records = [(1_000.0 + 2 * i + KEPT_UP_LAG_MS, s) for i, s in enumerate(sent)]

    assert latency_row("x", 1_000, 1_000.0, records)["kept_up"] is False


def test_throughput_counts_from_the_first_to_the_last_completion() -> None:
    records = [(1_000.0 + i * 0.5, 0.0) for i in range(1_001)]  # 1,000 gaps in 500 ms

    row = throughput_row("x", records)

    assert row["events_per_s"] == pytest.approx(2_000.0)
    assert row["events"] == 1_001
