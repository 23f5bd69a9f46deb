"""Every process on a Sentinel deployment (REDIS_URL=redis+sentinel://...): connector-run,
run-all in both modes, consume, the CLI and the ops API work, and when Sentinel promotes
a replica after the master dies they carry on against the new master: no crash, no
traceback, no restart."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from framework.testing import ReplayServer, Reply, SentinelTrio, free_port
from tests.cli import FleetCli
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # a Sentinel trio, real processes and a failover: ~10 s each

NAME = "weather-noaa"
STREAM = "raw-input-signals"
PROCESSES = {
    "connector-run": ("connector-run", NAME),
    "run-all": ("connector-fleet", "run-all"),
    "run-all-in-process": ("connector-fleet", "run-all", "--in-process"),
}

Start = Callable[..., ConnectorProcess]


@pytest.fixture
def trio() -> Iterator[SentinelTrio]:
    with SentinelTrio(replicas=2) as started:
        yield started


@pytest.fixture
def config(tmp_path: Path, replay: ReplayServer) -> Path:
    feed = ChangingFeed(size=20, change_every=4)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    return write_config(
        tmp_path / "connectors.json", noaa_entry(NAME, replay.url, pollIntervalMs=200)
    )


@pytest.fixture
def start(tmp_path: Path, trio: SentinelTrio, config: Path) -> Iterator[Start]:
    started: list[ConnectorProcess] = []

    def _start(*command: str, env: dict[str, str] | None = None) -> ConnectorProcess:
        process = ConnectorProcess(
            "",
            redis_url=trio.url,
            config=config,
            log=tmp_path / f"p{len(started)}.log",
            command=command,
            env={"FLEET_RESTART_BASE_S": "0.1", "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()


def master_client(trio: SentinelTrio) -> sync_redis.Redis:
    return sync_redis.Redis(port=trio.master_port(), decode_responses=True)


def fail_over(trio: SentinelTrio) -> None:
    old = trio.kill_master()
    trio.wait_for_failover(old)


def assert_no_traceback(*processes: ConnectorProcess) -> None:
    for process in processes:
        text = process.log_path.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("process", PROCESSES)
def test_publishes_through_sentinel_and_after_the_master_fails_over(
    start: Start,
    trio: SentinelTrio,
    process: str,
) -> None:
    runner = start(*PROCESSES[process], env={"REDIS_MIN_REPLICAS_ACKS": "1"})
    runner.wait_for("poll_completed", connector=NAME, timeout_s=30)
    with master_client(trio) as client:
        assert client.xlen(STREAM) > 0

    fail_over(trio)

    with master_client(trio) as client:
        published = client.xlen(STREAM)
        wait_until(lambda: client.xlen(STREAM) > published, timeout_s=30)
    assert runner.process.poll() is None
    assert not [e for e in runner.events() if e.get("event") == "child_exited"]
    runner.signal(signal.SIGTERM)
    assert runner.wait(20) == 0
    assert_no_traceback(runner)


def test_consume_reads_through_sentinel_and_after_the_master_fails_over(
    start: Start,
    trio: SentinelTrio,
) -> None:
    consumer = start(
        "connector-fleet",
        "consume",
        "--stream",
        "jobs",
        "--group",
        "g",
        "--consumer",
        "c1",
        "--start-id",
        "0",
        "--handler",
        "tests.consumer_handlers:recording",
    )
    with master_client(trio) as client:
        first = client.xadd("jobs", {"n": "1"})
        assert client.wait(2, 2000) == 2
    consumer.wait_for("entry_acked", entry_id=first, timeout_s=30)

    fail_over(trio)

    with master_client(trio) as client:
        second = client.xadd("jobs", {"n": "2"})
    consumer.wait_for("entry_acked", entry_id=second, timeout_s=30)
    assert consumer.process.poll() is None
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(20) == 0
    assert_no_traceback(consumer)


def test_the_cli_and_the_ops_api_answer_through_sentinel(
    start: Start,
    trio: SentinelTrio,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    runner = start("connector-run", NAME, env={"METRICS_PORT": str(port)})
    runner.wait_for("poll_completed", connector=NAME, timeout_s=30)
    cli = FleetCli(
        capsys, monkeypatch, {"REDIS_URL": trio.url, "CONNECTORS_CONFIG_PATH": str(config)}
    )

    status = cli("status")
    leases = cli("leases")
    health = httpx.get(f"http://127.0.0.1:{port}/health/connectors", timeout=5)

    assert status.returncode == 0 and NAME in status.stdout, status
    assert leases.returncode == 0 and NAME in leases.stdout, leases
    assert health.status_code == 200 and NAME in health.text


def test_no_sentinel_answering_is_one_short_line_without_the_password(
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ports = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    cli = FleetCli(
        capsys,
        monkeypatch,
        {
            "REDIS_URL": f"redis+sentinel://:pw-s3cret@{ports}/svc",
            "CONNECTORS_CONFIG_PATH": str(config),
        },
    )

    status = cli("status")

    assert status.returncode == 69
    problem = (status.stdout + status.stderr).strip()
    assert problem.endswith("No master found for 'svc' (2 Sentinel(s) did not answer)"), problem
    assert "pw-s3cret" not in problem and len(problem.splitlines()) == 1
