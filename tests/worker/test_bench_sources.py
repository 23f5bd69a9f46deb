"""``connector-fleet bench sources`` end to end with a tiny load, through the installed
command line: each source's connector and its bare client loop, over several fresh
runs, figures as median (min–max) with the load average shown."""

from __future__ import annotations

import os
import re

import pytest
import redis

from framework.testing import RedisServer
from tests.cli import installed_cli

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


@pytest.mark.timeout(300)
def test_bench_sources_reports_kafka_against_its_bare_loop(redis_server: RedisServer) -> None:
    result = installed_cli("bench", "sources", "--source", "kafka", "--events", "300",
                           "--runs", "2", "--redis-url", redis_server.url,
                           env=dict(os.environ), timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "bench sources: 2 run(s), each in fresh processes" in result.stdout
    assert "load average (1 min) at the start of each:" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if line.strip().startswith("kafka |")]
    assert "drain" in row and "events/s" in row
    assert len(re.findall(RANGE, row)) == 3, row


def test_bench_sources_names_an_unknown_source(redis_server: RedisServer) -> None:
    result = installed_cli("bench", "sources", "--source", "carrier-pigeon", "--runs", "1",
                           "--redis-url", redis_server.url, env=dict(os.environ), timeout_s=60)

    assert result.returncode != 0
    assert "carrier-pigeon" in result.stderr and "kafka" in result.stderr


@pytest.mark.timeout(300)
def test_bench_consume_has_a_kafka_publish_row_that_really_publishes(
    redis_server: RedisServer,
) -> None:
    result = installed_cli("bench", "consume", "--systems", "kafka_publish", "--events", "200",
                           "--rates", "100", "--duration", "1", "--runs", "1",
                           "--redis-url", redis_server.url, env=dict(os.environ),
                           timeout_s=280)

    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()
            if line.strip().startswith("kafka_publish |")]
    assert len(rows) == 2, result.stdout  # throughput and latency
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.xlen("bench-events:dlq") == 0  # every call published, none failed


@pytest.mark.timeout(300)
def test_bench_sources_reports_modbus_registers_against_the_bare_loop() -> None:
    result = installed_cli("bench", "sources", "--source", "modbus", "--registers", "50",
                           "--polls", "3", "--runs", "2", env=dict(os.environ),
                           timeout_s=280)

    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith("modbus |")]
    assert [row.split("|")[1].strip() for row in rows] == ["every-poll", "change"]
    for row in rows:
        assert "registers/s" in row and len(re.findall(RANGE, row)) == 3, row
