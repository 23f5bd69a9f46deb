"""Item 5: ``run-all --in-process`` with 200 connectors on a healthy Redis never runs
out of Redis connections: no lease is lost and no poll fails."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from framework.testing import RedisServer, ReplayServer, Reply
from tests.process import ConnectorProcess, noaa_entry, write_config

# A 200-connector fleet watched for 25 s once every connector has polled (starting
# 200 workers takes from seconds to a minute or more on a loaded 2-core machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

COUNT = 200
WATCH_S = 25.0
STARTUP_TIMEOUT_S = 240.0


def _feed(index: int) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [
        {"id": f"https://api.weather.gov/alerts/pool-{index}-{n}", "type": "Feature",
         "geometry": None, "properties": {"id": f"pool-{index}-{n}", "event": "Test Warning",
                                          "severity": "Severe", "sent": "2026-11-20T14:00:00Z"}}
        for n in range(5)]}


def polled_connectors(events: list[dict[str, Any]]) -> set[str]:
    return {e["connector"] for e in events if e.get("event") == "poll_completed"}


def test_in_process_fleet_of_200_loses_no_lease_and_fails_no_poll(
    tmp_path: Path, redis_server: RedisServer, replay: ReplayServer
) -> None:
    entries = []
    for i in range(COUNT):
        replay.route(f"/c{i}/alerts", Reply(body=_feed(i)))
        entries.append(noaa_entry(f"pool-{i}", replay.url, pollIntervalMs=1000,
                                  leaseTtlSeconds=3, requestTimeoutMs=5000,
                                  providerConfig={"baseUrl": replay.url,
                                                  "alertsPath": f"/c{i}/alerts"}))
    config = write_config(tmp_path / "c.json", *entries)
    fleet = ConnectorProcess("fleet", redis_url=redis_server.url, config=config,
                             log=tmp_path / "fleet.log", env={"LOG_LEVEL": "INFO"},
                             command=("connector-fleet", "run-all", "--in-process"))
    try:
        fleet.wait_for("fleet_started", timeout_s=60)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(polled_connectors(fleet.events())) < COUNT and time.monotonic() < deadline:
            assert fleet.process.poll() is None
            time.sleep(1)
        steady = len(fleet.events())
        time.sleep(WATCH_S)
        assert fleet.process.poll() is None
        events = fleet.events()
    finally:
        fleet.close()
    names = [e.get("event") for e in events]
    assert len(polled_connectors(events)) == COUNT
    # Still polling in the watched window, not stalled.
    assert len(polled_connectors(events[steady:])) == COUNT
    faults = [e for e in events if e.get("event") in (
        "lease_lost", "lease_renew_failed", "lease_expired_while_redis_unavailable",
        "poll_failed", "poll_failed_redis", "poll_crashed", "redis_unavailable",
        "worker_crashed")]
    assert faults[:5] == [], f"{len(faults)} faults among {len(names)} events"
