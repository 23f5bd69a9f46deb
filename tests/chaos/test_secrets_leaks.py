"""Secrets never printed: every value a ``${VAR}`` took from the environment is
redacted in the start-up log, in poll errors and in ``config check``, wherever it
sits (URL query ``api_token=``, URL userinfo, ``Cookie``, a custom header) and
whatever the field is called.

Each secret holds a marker of letters and digits, which no encoding changes: if a
marker shows up, the secret leaked in some form."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.core import KnownSecrets, Secrets, SystemClock
from framework.polling import FleetConfig
from framework.testing import RedisServer, ReplayServer, Reply
from tests.cli import FleetCli
from tests.process import ConnectorProcess, write_config
from worker.ops import OpsContext, OpsServer, build_app

SECRETS = {
    "SRC_PASSWORD": "pw+Mk1pass!word",  # URL userinfo
    "SRC_TOKEN": "tok Mk2token&x=1",  # URL query: encoded on the way out
    "SRC_COOKIE": "Mk3cookie-session",  # Cookie header
    "SRC_CUSTOM": "Mk4custom/header+v",  # a header whose name says nothing
}
MARKERS = ("Mk1pass", "Mk2token", "Mk3cookie", "Mk4custom")


def leaky_entry(name: str, base_url: str, **provider: Any) -> dict[str, Any]:
    host = base_url.removeprefix("http://")
    return {
        "name": name, "type": "HTTP_JSON", "pollIntervalMs": 200, "requestTimeoutMs": 2000,
        "maxRetries": 0, "leaseTtlSeconds": 2,
        "providerConfig": {
            "url": f"http://ops:${{SRC_PASSWORD}}@{host}/orders?api_token=${{SRC_TOKEN}}",
            "headers": {"Cookie": "session=${SRC_COOKIE}", "X-Source-Auth": "${SRC_CUSTOM}"},
            "idField": "id", **provider,
        },
    }


def assert_no_secret(text: str) -> None:
    leaked = [marker for marker in MARKERS if marker in text]
    assert not leaked, f"secrets leaked ({leaked}):\n{text[-3000:]}"


@pytest.fixture
def cli(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> FleetCli:
    return FleetCli(capsys, monkeypatch, {"REDIS_URL": redis_server.url, **SECRETS})


@pytest.fixture
def processes() -> Iterator[list[ConnectorProcess]]:
    started: list[ConnectorProcess] = []
    yield started
    for process in started:
        process.close()


@pytest.mark.slow
def test_the_start_up_log_and_poll_errors_never_show_a_secret(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer,
    processes: list[ConnectorProcess],
) -> None:
    # A hostile source: it fails every request, so the URL ends up in error messages.
    replay.route("/orders", lambda _: Reply(status=500, body={"error": "down"}))
    config = write_config(tmp_path / "c.json", leaky_entry("leaky", replay.url))
    worker = ConnectorProcess("leaky", redis_url=redis_server.url, config=config,
                              log=tmp_path / "leaky.log", env=SECRETS)
    processes.append(worker)

    started = worker.wait_for("worker_started")
    worker.wait_for("poll_failed")
    worker.signal(signal.SIGTERM)
    worker.wait()

    assert_no_secret(worker.log_path.read_text())
    provider = started["config"]["providerConfig"]
    assert provider["url"] == f"http://ops:***@{replay.url[7:]}/orders?api_token=***"
    assert provider["headers"] == {"Cookie": "session=***", "X-Source-Auth": "***"}
    # The request did carry the secrets: they were hidden, not dropped.
    request = replay.requests[0]
    assert request.headers["cookie"] == f"session={SECRETS['SRC_COOKIE']}"
    assert request.headers["x-source-auth"] == SECRETS["SRC_CUSTOM"]


def test_config_check_never_shows_a_secret(cli: FleetCli, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", leaky_entry("leaky", "http://127.0.0.1:9"))

    result = cli("config", "check", env={"CONNECTORS_CONFIG_PATH": str(config)})

    assert result.returncode == 0, result.stderr
    assert_no_secret(result.stdout + result.stderr)
    shown = orjson.loads(result.stdout)["connectors"][0]["providerConfig"]
    assert shown["url"] == "http://ops:***@127.0.0.1:9/orders?api_token=***"
    assert shown["headers"] == {"Cookie": "session=***", "X-Source-Auth": "***"}


def test_an_error_message_that_quotes_a_secret_is_redacted(
    cli: FleetCli, tmp_path: Path, redis_server: RedisServer,
    processes: list[ConnectorProcess],
) -> None:
    # The provider quotes the invalid expression in its error: here it is a secret.
    config = write_config(tmp_path / "c.json", leaky_entry(
        "leaky", "http://127.0.0.1:9", idField="id[[${SRC_CUSTOM}"))

    result = cli("config", "check", env={"CONNECTORS_CONFIG_PATH": str(config)})
    worker = ConnectorProcess("leaky", redis_url=redis_server.url, config=config,
                              log=tmp_path / "leaky.log", env=SECRETS)
    processes.append(worker)

    assert result.returncode == 78
    assert "invalid JMESPath expression 'id[[***'" in result.stderr
    assert_no_secret(result.stdout + result.stderr)
    assert worker.wait() == 78
    assert "id[[***" in worker.wait_for("config_invalid")["error"]
    assert_no_secret(worker.log_path.read_text())


async def test_the_ops_api_never_answers_with_a_secret(redis: Redis) -> None:
    known = KnownSecrets()
    known.remember(Secrets.of(SECRETS.values()))
    # A health detail that quotes a secret (as an error text would).
    def leaky_health() -> tuple[bool, dict[str, Any]]:
        return False, {"reason": f"GET /x?api_token={SECRETS['SRC_TOKEN']}"}

    ops = OpsContext(redis=redis, prometheus=CollectorRegistry(),
                     fleet=lambda: FleetConfig(connectors={}, source="test"),
                     clock=SystemClock(), process_health=leaky_health, secrets=known)
    server = OpsServer(build_app(ops), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/health")
    finally:
        await server.stop()

    assert answer.status_code == 503
    assert answer.json()["reason"] == "GET /x?api_token=***"
    assert_no_secret(answer.text)
