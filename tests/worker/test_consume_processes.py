"""``connector-fleet consume --processes N``: N consumers of one group under a supervisor
(distinct names, the work shared, a dead child restarted, SIGTERM drains every one)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import RedisServer
from tests.conftest import REPO_ROOT
from tests.consumer_handlers import DONE, STARTED
from tests.helpers import wait_until
from tests.process import ConnectorProcess

pytestmark = pytest.mark.slow  # real processes and signals: seconds per test

STREAM = "jobs"


@pytest.fixture
def supervisor(tmp_path: Path, redis_server: RedisServer) -> Iterator[ConnectorProcess]:
    process = ConnectorProcess(
        "consumers",
        redis_url=redis_server.url,
        config=tmp_path / "connectors.json",
        log=tmp_path / "consumers.log",
        command=(
            "connector-fleet",
            "consume",
            "--processes",
            "2",
            "--stream",
            STREAM,
            "--group",
            "workers",
            "--consumer",
            "w",
            "--start-id",
            "0",
            "--max-in-flight",
            "4",
            "--handler",
            "tests.consumer_handlers:recording",
        ),
        env={"HANDLER_SLEEP_S": "0.05", "PYTHONPATH": str(REPO_ROOT)},
    )
    yield process
    process.close()


def _add(client: sync_redis.Redis, count: int) -> None:
    for index in range(count):
        client.xadd(STREAM, {"n": str(index)})


def test_two_processes_share_the_group_under_distinct_names_and_drain_on_sigterm(
    supervisor: ConnectorProcess, sync: sync_redis.Redis
) -> None:
    _add(sync, 80)
    wait_until(lambda: sync.llen(DONE) == 80, timeout_s=60)
    takers = {line.split()[0] for line in sync.lrange(STARTED, 0, -1)}
    assert takers == {"w-1", "w-2"}

    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout_s=30) == 0
    stopped = [e for e in supervisor.events() if e.get("event") == "consumer_stopped"]
    assert sorted(e["consumer"] for e in stopped) == ["w-1", "w-2"]


def test_a_child_killed_is_restarted_and_its_entries_are_finished(
    supervisor: ConnectorProcess, sync: sync_redis.Redis
) -> None:
    first = supervisor.wait_for("consumer_process_started", child=1)
    supervisor.wait_for("consumer_started", consumer="w-1")
    os.kill(first["pid"], signal.SIGKILL)
    supervisor.wait_for("consumer_process_exited", child=1, exit_code=-9)
    restarted = supervisor.wait_for(
        "consumer_process_started", child=1, after=supervisor.events().index(first) + 1
    )
    assert restarted["pid"] != first["pid"]

    _add(sync, 20)
    wait_until(lambda: sync.llen(DONE) == 20, timeout_s=60)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(timeout_s=30) == 0
