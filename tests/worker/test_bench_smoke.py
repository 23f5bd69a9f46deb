"""Each benchmark end to end with tiny sizes, through the installed command line,
against a real Redis: every run in fresh processes, figures as median (min–max),
the load average shown. Peers whose virtualenv is missing are skipped, saying so
(``scripts/setup --bench`` makes them)."""

from __future__ import annotations

import os
import re

import pytest

from framework.testing import RedisServer
from tests.cli import installed_cli
from worker.bench.peers import PEERS

pytestmark = pytest.mark.slow

RANGE = r"[\d,.]+ \([\d,.]+–[\d,.]+\)"  # median (min–max)


def test_bench_publish_reports_the_poll_and_both_baselines_over_runs(
    redis_server: RedisServer,
) -> None:
    result = installed_cli(
        "bench",
        "publish",
        "--items",
        "300",
        "--runs",
        "2",
        "--redis-url",
        redis_server.url,
        env=dict(os.environ),
        timeout_s=110,
    )

    assert result.returncode == 0, result.stderr
    assert "bench publish: 2 run(s), each in fresh processes" in result.stdout
    assert "load average (1 min) at the start of each:" in result.stdout
    assert "bare Lua" in result.stdout and "sync pipeline" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if line.strip().startswith("300 |")]
    assert len(re.findall(RANGE, row)) >= 5, row
    assert "(30 published)" in row


@pytest.mark.timeout(300)
def test_bench_consume_reports_connector_fleet_one_and_two_processes_and_the_limit_loop(
    redis_server: RedisServer,
) -> None:
    result = installed_cli(
        "bench",
        "consume",
        "--systems",
        "connector-fleet",
        "connector-fleet-2p",
        "limit",
        "--events",
        "300",
        "--rates",
        "300",
        "--duration",
        "0.5",
        "--runs",
        "2",
        "--redis-url",
        redis_server.url,
        env=dict(os.environ),
        timeout_s=280,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    throughput = lines.index(next(line for line in lines if line.startswith("throughput")))
    latency = lines.index(next(line for line in lines if line.startswith("latency")))
    for system in ("connector-fleet", "connector-fleet-2p", "limit"):
        (rate_row,) = [line for line in lines[throughput:latency] if f" {system} |" in line]
        assert re.search(RANGE, rate_row), rate_row
        (latency_row,) = [line for line in lines[latency:] if f" {system} |" in line]
        assert re.search(r"\|\s+300 \|", latency_row), latency_row
        assert re.search(r"\| [012]/2$", latency_row), latency_row  # kept up, of 2 runs


@pytest.mark.timeout(600)
@pytest.mark.parametrize("peer", sorted(PEERS))
def test_bench_consume_runs_each_peer_in_its_virtualenv(
    redis_server: RedisServer, peer: str
) -> None:
    if (reason := PEERS[peer].missing()) is not None:
        pytest.skip(f"{peer}: {reason}")

    result = installed_cli(
        "bench",
        "consume",
        "--systems",
        peer,
        "--events",
        "200",
        "--rates",
        "200",
        "--duration",
        "0.5",
        "--runs",
        "1",
        "--redis-url",
        redis_server.url,
        env=dict(os.environ),
        timeout_s=580,
    )

    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stderr, result.stderr
    rows = [line for line in result.stdout.splitlines() if f" {peer} |" in line]
    assert len(rows) == 2, result.stdout  # a throughput row and a latency row


@pytest.mark.timeout(300)
def test_bench_fleet_reports_memory_cpu_and_jitter_over_runs() -> None:
    result = installed_cli(
        "bench",
        "fleet",
        "--connectors",
        "2",
        "--modes",
        "in-process",
        "--duration",
        "1",
        "--runs",
        "2",
        env=dict(os.environ),
        timeout_s=280,
    )

    assert result.returncode == 0, result.stderr
    assert "bench fleet: 2 run(s)" in result.stdout
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("in-process")]
    assert len(re.findall(RANGE, row)) >= 8, row


@pytest.mark.timeout(300)
def test_bench_scale_reports_one_server_and_the_cluster_with_shards_and_wait() -> None:
    result = installed_cli("bench", "scale", "--items", "60", "--runs", "1",
                           env=dict(os.environ), timeout_s=280)

    assert result.returncode == 0, result.stderr
    assert "bench scale: 1 run(s), each in fresh processes" in result.stdout
    rows = [line.split("|") for line in result.stdout.splitlines() if line.count("|") == 6]
    setups = [tuple(cell.strip() for cell in row[:3]) for row in rows[1:]]
    assert setups == [("single", "1", "0"), ("cluster", "1", "0"), ("cluster", "3", "0"),
                      ("cluster", "6", "0"), ("cluster", "3", "1")]
    for row in rows[1:]:
        assert all(float(cell.replace(",", "")) > 0 for cell in row[3:]), row
