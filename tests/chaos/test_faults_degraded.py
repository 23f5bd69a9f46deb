"""Item 12c: a connector whose every item fails (the transform rejects each one) is
reported degraded: unhealthy in status and health, ``connector_degraded`` 1 in the
Prometheus metrics; once items get through again it is healthy again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.noaa_feed import alert_feature, collection
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # a real process over several polls

NAME = "weather-noaa"


def broken(number: int) -> dict[str, Any]:
    """An alert with an id but none of the fields the signal model needs."""
    feature = alert_feature(number, 1)
    feature["properties"] = {"id": feature["properties"]["id"]}
    return feature


def test_a_connector_whose_every_item_fails_is_reported_degraded(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    feed = {"features": [broken(1), broken(2), broken(3)]}
    replay.route("/alerts/active", lambda _: Reply(body=collection(feed["features"])))
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=200))
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "w.log", args=("--metrics-port", str(port)))
    try:
        worker.wait_for("poll_completed", failed=3, published=0)
        status = httpx.get(f"{api}/metrics/connectors/{NAME}").json()
        assert status["healthy"] is False
        assert "every item failed" in status["reason"]
        assert status["lastPollItemsFailed"] == 3 and status["itemsFailed"] >= 3
        health = httpx.get(f"{api}/health/connectors")
        assert health.status_code == 503
        assert "every item failed" in health.json()["connectors"][NAME]["reason"]
        process = httpx.get(f"{api}/health")
        assert process.status_code == 503 and "every item failed" in process.json()["reason"]
        assert f'connector_degraded{{connector="{NAME}"}} 1.0' in httpx.get(f"{api}/metrics").text

        feed["features"] = [broken(1), alert_feature(4, 1)]  # one item gets through
        worker.wait_for("poll_completed", published=1)
        worker.wait_for("poll_completed", failed=1, published=0, skipped_unchanged=1)
        assert httpx.get(f"{api}/metrics/connectors/{NAME}").json()["healthy"] is True
        assert httpx.get(f"{api}/health").status_code == 200
        assert f'connector_degraded{{connector="{NAME}"}} 0.0' in httpx.get(f"{api}/metrics").text
    finally:
        worker.close()
