"""The real ``connector-fleet consume`` process trims its streams periodically: what its
group acknowledged goes, what another group (a second application, far behind) has not
acknowledged stays; the trimmed count is on /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from framework.testing import RedisServer, free_port
from tests.conftest import REPO_ROOT
from tests.consumer_handlers import DONE
from tests.helpers import wait_until
from tests.process import ConnectorProcess

pytestmark = pytest.mark.slow  # a real process: seconds

STREAM = "jobs"


def test_the_consumer_process_trims_what_every_group_acknowledged(
    sync: sync_redis.Redis,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(10)]
    sync.xgroup_create(STREAM, "laggard", id="0")
    # The laggard read 6 and acknowledged 4 (ids[4], ids[5] stay pending): ids[0..3] may go.
    delivered = [
        i
        for _, entries in sync.xreadgroup("laggard", "l1", {STREAM: ">"}, count=6)
        for i, _ in entries
    ]
    sync.xack(STREAM, "laggard", *delivered[:4])
    port = free_port()
    process = ConnectorProcess(
        "consumer",
        redis_url=redis_server.url,
        config=tmp_path / "connectors.json",
        log=tmp_path / "consumer.log",
        command=(
            "connector-fleet",
            "consume",
            "--stream",
            STREAM,
            "--group",
            "workers",
            "--consumer",
            "w1",
            "--start-id",
            "0",
            "--handler",
            "tests.consumer_handlers:recording",
        ),
        env={
            "PYTHONPATH": str(REPO_ROOT),
            "METRICS_PORT": str(port),
            "FLEET_STREAM_TRIM_INTERVAL_S": "0.2",
        },
    )
    try:
        wait_until(lambda: sync.llen(DONE) == 10)
        wait_until(lambda: sync.xlen(STREAM) == 6, timeout_s=15)
        assert [i for i, _ in sync.xrange(STREAM)] == ids[4:]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert (
            f'stream_trimmed_entries_total{{reason="acknowledged",stream="{STREAM}"}} 4.0'
            in metrics
        )
        # The laggard catches up: the rest goes too.
        sync.xack(STREAM, "laggard", *delivered[4:])
        rest = [
            i for _, entries in sync.xreadgroup("laggard", "l1", {STREAM: ">"}) for i, _ in entries
        ]
        sync.xack(STREAM, "laggard", *rest)
        wait_until(lambda: sync.xlen(STREAM) == 0, timeout_s=15)
    finally:
        process.close()
