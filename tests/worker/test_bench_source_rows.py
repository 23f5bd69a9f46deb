"""The IMAP, fs-watch and cron rows of ``bench sources`` (``measure(params)``, the
interface of worker/bench/sources.py) with a tiny load: both loops move everything
into the stream and the figures come back."""

from __future__ import annotations

import pytest

from framework.testing import RedisServer
from worker.bench import source_cron, source_fs, source_imap
from worker.bench.sources import SOURCES, UNITS
from worker.bench.stats import percentile

pytestmark = pytest.mark.slow  # private Dovecot, real files, real seconds


def test_the_new_rows_are_listed_with_their_units() -> None:
    for name in ("imap", "fs", "cron"):
        assert name in SOURCES and name in UNITS


def test_imap_row_drains_every_mail_through_both_loops(redis_server: RedisServer) -> None:
    for _ in range(2):  # a second run on the same Redis starts clean
        [row] = source_imap.measure({"mails": 60, "redis_url": redis_server.url})
        assert set(row) == {"mode", "mails", "rate", "bare_rate"}
        assert row["rate"] > 0 and row["bare_rate"] > 0


def test_fs_row_sees_every_file_through_both_loops(redis_server: RedisServer) -> None:
    [row] = source_fs.measure({"files": 100, "redis_url": redis_server.url})
    assert row["mode"] == "create" and row["rate"] > 0 and row["bare_rate"] > 0


@pytest.mark.timeout(60)
def test_cron_rows_give_lateness_percentiles_without_a_ratio(
    redis_server: RedisServer,
) -> None:
    p50, p99 = source_cron.measure({"ticks": 3, "redis_url": redis_server.url})
    assert (p50["mode"], p99["mode"]) == ("p50", "p99")
    for row in (p50, p99):
        assert row["ratio"] is None
        # Late, never early, and well within the second between ticks.
        assert 0 <= row["rate"] < 1000 and 0 <= row["bare_rate"] < 1000
    assert p50["rate"] <= p99["rate"]


def test_percentile_of_one_of_many_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([float(n) for n in range(1, 101)], 50) == pytest.approx(50.5)
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
