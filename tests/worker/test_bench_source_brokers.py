"""The MQTT and AMQP rows of ``bench sources``, each run in fresh processes with a
tiny backlog: the connector's and the bare loop's events/s and their ratio."""

from __future__ import annotations

import pytest

from worker.bench.repeat import repeat_in_fresh_processes

pytestmark = pytest.mark.slow  # private brokers in fresh processes


@pytest.mark.parametrize(("kind", "runs"), [("source-mqtt", 2), ("source-amqp", 1)])
def test_a_broker_row_reports_the_connector_against_the_bare_loop(kind: str, runs: int) -> None:
    repeated = repeat_in_fresh_processes(kind, {"messages": 200}, runs=runs, timeout_s=300)

    assert len(repeated.runs) == runs
    for rows in repeated.runs:
        rates = {row["path"]: row["events_per_s"] for row in rows}
        connector, bare = (rate for path, rate in rates.items() if path != "ratio")
        assert connector > 0 and bare > 0
        assert rates["ratio"] == pytest.approx(connector / bare)
