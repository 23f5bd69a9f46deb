"""A Redis Cluster of 3 masters (REDIS_URL=redis+cluster://..., or REDIS_CLUSTER=true):
each process starts, reaches the cluster and names a key layout that cannot work there
(a connector's commit over several slots: retried without a crash or a traceback; a
consumed stream without a hash tag: refused at start). A single-server URL pointing at a
cluster node says to use the cluster form."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from framework.testing import RedisCluster, ReplayServer, Reply
from tests.cli import FleetCli
from tests.conftest import REPO_ROOT
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # a 3-node cluster and real processes: ~5 s each

NAME = "weather-noaa"
NOT_READY = "not cluster-ready"

Start = Callable[..., ConnectorProcess]


@pytest.fixture
def config(tmp_path: Path, replay: ReplayServer) -> Path:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    return write_config(
        tmp_path / "connectors.json", noaa_entry(NAME, replay.url, pollIntervalMs=200)
    )


@pytest.fixture
def start(tmp_path: Path, config: Path, cluster_servers: RedisCluster) -> Iterator[Start]:
    started: list[ConnectorProcess] = []
    seed = sync_redis.RedisCluster(host="127.0.0.1", port=cluster_servers.nodes[0].port)
    seed.delete(f"lease:{NAME}")  # a lease left by the previous test of the module
    seed.close()

    def _start(*command: str, url: str, env: dict[str, str] | None = None) -> ConnectorProcess:
        process = ConnectorProcess(
            "",
            redis_url=url,
            config=config,
            log=tmp_path / f"p{len(started)}.log",
            command=command,
            env={"PYTHONPATH": str(REPO_ROOT), **(env or {})},
        )
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()


def wait_for_error(
    process: ConnectorProcess, event: str, text: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """The first ``event`` whose ``error`` contains ``text``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in process.events():
            if entry.get("event") == event and text in str(entry.get("error", "")):
                return entry
        time.sleep(0.1)
    raise AssertionError(f"no {event} with {text!r}: {process.events()[-10:]}")


def stop_cleanly(process: ConnectorProcess) -> None:
    assert process.process.poll() is None  # still running: no crash, no restart
    process.signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert "Traceback" not in process.log_path.read_text(errors="replace")


def node_not_owning(cluster: RedisCluster, key: str) -> int:
    """The port of a node that does not serve ``key``'s slot (it answers MOVED)."""
    with sync_redis.Redis(port=cluster.nodes[0].port) as client:
        slot = int(client.cluster("keyslot", key))
        owners = {
            int(entry[2][1])
            for entry in client.execute_command("CLUSTER", "SLOTS")
            if int(entry[0]) <= slot <= int(entry[1])
        }
    return next(node.port for node in cluster.nodes if node.port not in owners)


@pytest.mark.parametrize("form", ["url", "flag"])
def test_connector_run_reaches_the_cluster_and_names_what_is_not_cluster_ready(
    start: Start,
    cluster_servers: RedisCluster,
    form: str,
) -> None:
    if form == "url":
        runner = start("connector-run", NAME, url=cluster_servers.url)
    else:
        runner = start(
            "connector-run",
            NAME,
            url=f"redis://127.0.0.1:{cluster_servers.nodes[1].port}",
            env={"REDIS_CLUSTER": "true"},
        )

    runner.wait_for("lease_acquired", timeout_s=30)
    failed = wait_for_error(runner, "poll_failed_redis", NOT_READY)

    assert "CROSSSLOT" in failed["error"]
    stop_cleanly(runner)


def test_consume_of_a_stream_without_hash_tag_is_refused_naming_it(
    start: Start,
    cluster_servers: RedisCluster,
) -> None:
    # Its dead letters, step records and errors would sit in other slots than "jobs".
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
        url=cluster_servers.url,
    )

    assert consumer.wait(30) == 78
    refused = consumer.wait_for("config_invalid")
    assert "stream 'jobs'" in refused["error"] and "{STREAM}" in refused["error"]
    assert "Traceback" not in consumer.log_path.read_text(errors="replace")


def test_a_single_server_url_at_a_cluster_node_says_to_use_the_cluster_form(
    start: Start,
    cluster_servers: RedisCluster,
) -> None:
    port = node_not_owning(cluster_servers, f"lease:{NAME}")
    runner = start("connector-run", NAME, url=f"redis://127.0.0.1:{port}")

    wait_for_error(runner, "redis_unavailable", "use redis+cluster:// or REDIS_CLUSTER=true")

    stop_cleanly(runner)


def test_the_cli_reads_the_cluster(
    start: Start,
    cluster_servers: RedisCluster,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = start("connector-run", NAME, url=cluster_servers.url)
    runner.wait_for("lease_acquired", timeout_s=30)
    env = {"REDIS_URL": cluster_servers.url, "CONNECTORS_CONFIG_PATH": str(config)}
    cli = FleetCli(capsys, monkeypatch, env)

    status = cli("status")
    leases = cli("leases")

    assert status.returncode == 0 and NAME in status.stdout, status
    assert leases.returncode == 0 and str(runner.pid) in leases.stdout, leases
