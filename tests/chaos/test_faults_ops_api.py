"""Item 12b: the ops API with Redis gone or frozen answers 503 JSON naming Redis (no
traceback, within a deadline) on every endpoint that reads Redis, /readyz included;
/health says 503 too, and /healthz (liveness) and /metrics still answer 200."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from framework.core import SystemClock, create_redis
from framework.polling import FleetConfig, load_fleet_config
from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config
from worker.ops import OpsContext, OpsServer, build_app

NAME = "weather-noaa"
DATA_ENDPOINTS = ("/metrics/connectors", f"/metrics/connectors/{NAME}", "/health/connectors",
                  "/readyz", "/health")


def assert_names_redis_without_traceback(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert "redis" in str(body).lower()
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.slow  # a real process, and its Redis killed under it
def test_ops_api_answers_503_naming_redis_when_redis_is_down(
    tmp_path: Path, replay: ReplayServer
) -> None:
    feed = ChangingFeed(size=5, change_every=1)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    port = free_port()
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url))
    with RedisServer() as server:
        worker = ConnectorProcess(NAME, redis_url=server.url, config=config,
                                  log=tmp_path / "w.log", args=("--metrics-port", str(port)))
        try:
            worker.wait_for("poll_completed")
            api = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{api}/health").status_code == 200
            server.stop()
            for path in DATA_ENDPOINTS:
                assert_names_redis_without_traceback(httpx.get(api + path, timeout=10))
            assert httpx.get(f"{api}/healthz").status_code == 200
            assert httpx.get(f"{api}/metrics").status_code == 200
            assert worker.process.poll() is None
        finally:
            worker.close()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A "Redis" that accepts connections and never answers (a frozen server)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        listener.close()


@pytest.mark.slow  # each request waits for the ops API's Redis deadline
async def test_ops_api_answers_503_within_its_deadline_when_redis_is_frozen(
    tmp_path: Path, black_hole: str
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, "http://127.0.0.1:9"))
    fleet: FleetConfig = load_fleet_config(config)
    redis = create_redis(black_hole)
    ops = OpsContext(redis=redis, prometheus=CollectorRegistry(),
                     fleet=lambda: fleet, clock=SystemClock(),
                     process_health=lambda: (True, {"role": "standby"}))
    server = OpsServer(build_app(ops), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            for path in ("/metrics/connectors", "/readyz"):
                # The bound: the ops API's 3 s Redis deadline, plus slack for a busy machine.
                response = await client.get(path, timeout=8)
                assert_names_redis_without_traceback(response)
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop()
        await redis.aclose()
