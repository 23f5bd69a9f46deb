"""The MQTT and AMQP rows of ``bench sources`` (``measure(params)``, the interface of
worker/bench/sources.py) with a tiny backlog: both loops drain it
into the stream, and the rates come back."""

from __future__ import annotations

import importlib

import pytest

from framework.testing import RedisServer

pytestmark = pytest.mark.slow  # private brokers


@pytest.mark.parametrize("module", ["worker.bench.source_mqtt", "worker.bench.source_amqp"])
def test_a_broker_row_measures_the_connector_and_the_bare_loop(
    module: str, redis_server: RedisServer,
) -> None:
    measure = importlib.import_module(module).measure
    for _ in range(2):  # a second run on the same Redis starts clean
        rows = measure({"events": 200, "redis_url": redis_server.url})
        assert rows and {row["mode"] for row in rows} <= {"drain", "drain-qos2"}
        assert "drain" in {row["mode"] for row in rows}
        for row in rows:
            assert set(row) == {"mode", "events", "rate", "bare_rate"}
            assert row["rate"] > 0 and row["bare_rate"] > 0
