"""The real ``connector-fleet consume`` process: kill -9 with work in flight, SIGTERM
drain, dead letters through the CLI."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer, free_port
from tests.cli import FleetCli, installed_cli
from tests.conftest import REPO_ROOT
from tests.consumer_handlers import CALLS, DONE, STARTED
from tests.helpers import wait_until
from tests.process import ConnectorProcess

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

STREAM = "jobs"
GROUP = "workers"

Start = Callable[..., ConnectorProcess]
Fleet = Callable[..., str]


@pytest.fixture
def start(tmp_path: Path, redis_server: RedisServer) -> Iterator[Start]:
    started: list[ConnectorProcess] = []

    def _start(name: str, *args: str, sleep_s: float = 0.0) -> ConnectorProcess:
        process = ConnectorProcess(
            name, redis_url=redis_server.url, config=tmp_path / "connectors.json",
            log=tmp_path / f"{name}-{len(started)}.log",
            command=("connector-fleet", "consume", "--stream", STREAM, "--group", GROUP,
                     "--consumer", name, "--start-id", "0",
                     "--handler", "tests.consumer_handlers:recording", *args),
            env={"HANDLER_SLEEP_S": str(sleep_s), "PYTHONPATH": str(REPO_ROOT)})
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()




def acked(*processes: ConnectorProcess) -> Counter[str]:
    return Counter(e["entry_id"] for p in processes for e in p.events()
                   if e.get("event") == "entry_acked")


def test_kill_9_with_work_in_flight_another_consumer_finishes_it(
    sync: sync_redis.Redis, start: Start,
) -> None:
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(6)]
    first = start("first", "--max-in-flight", "4", "--claim-idle-ms", "1000", sleep_s=60)
    wait_until(lambda: sync.llen(STARTED) == 4)
    assert sync.xpending(STREAM, GROUP)["pending"] == 4  # the other 2 not even read

    first.process.send_signal(signal.SIGKILL)
    first.wait()
    assert sync.xpending(STREAM, GROUP)["pending"] == 4  # nothing lost with the process

    second = start("second", "--claim-idle-ms", "1000")
    wait_until(lambda: sync.llen(DONE) == 6)
    wait_until(lambda: sync.xpending(STREAM, GROUP)["pending"] == 0)
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0

    assert sorted(sync.lrange(DONE, 0, -1)) == sorted(ids)
    assert acked(first, second) == Counter({entry_id: 1 for entry_id in ids})
    reclaimed = {e["entry_id"] for e in second.events() if e.get("event") == "entry_reclaimed"}
    taken_by_first = {line.split()[1] for line in sync.lrange(STARTED, 0, 3)}
    assert reclaimed == taken_by_first


def test_sigterm_drains_in_flight_work_and_exits_0(
    sync: sync_redis.Redis, start: Start,
) -> None:
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(3)]
    consumer = start("drainer", sleep_s=1.0)
    wait_until(lambda: sync.llen(STARTED) == 3)
    assert sync.llen(DONE) == 0

    consumer.signal(signal.SIGTERM)

    assert consumer.wait(30) == 0
    assert sorted(sync.lrange(DONE, 0, -1)) == sorted(ids)
    assert sync.xpending(STREAM, GROUP)["pending"] == 0
    consumer.wait_for("draining", in_flight=3, timeout_s=30)
    consumer.wait_for("consumer_stopped", timeout_s=30)
    assert not sync.exists(f"fleet:consumers:{GROUP}:drainer")


def test_dead_letters_are_listed_shown_replayed_and_purged_with_the_cli(
    sync: sync_redis.Redis, start: Start, redis_server: RedisServer, fleet: Fleet,
) -> None:
    poison = sync.xadd(STREAM, {"n": "0", "fail": "1"})
    invalid = sync.xadd(STREAM, {"n": "1", "invalid": "1"})
    consumer = start("dlq", "--claim-idle-ms", "300", "--max-deliveries", "2")
    wait_until(lambda: sync.xlen(f"{STREAM}:dlq") == 2)
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0

    env = {**os.environ, "REDIS_URL": redis_server.url}
    installed = installed_cli("dlq", "list", STREAM, "--json", env=env)
    assert installed.returncode == 0, installed.stderr
    listing = orjson.loads(installed.stdout)
    by_entry = {letter["entryId"]: letter for letter in listing}
    assert by_entry[poison]["attempts"] == 2
    assert f"RuntimeError: entry {poison} always fails" in by_entry[poison]["reason"]
    assert by_entry[invalid]["attempts"] == 1 and by_entry[invalid]["rule"] == "test-rule"
    assert by_entry[invalid]["reason"] == "field invalid is set"

    shown = orjson.loads(fleet("dlq", "show", STREAM, by_entry[poison]["id"]))
    assert shown["fields"] == {"n": "0", "fail": "1"} and shown["stream"] == STREAM

    table = fleet("consumers")
    assert STREAM in table and GROUP in table and "dlq" in table

    replayed = fleet("dlq", "replay", STREAM, by_entry[invalid]["id"])
    new_id = replayed.split()[-1]
    assert sync.xrange(STREAM, min=new_id) == [
        (new_id, {"n": "1", "invalid": "1", "replay_of": invalid})]
    assert sync.xlen(f"{STREAM}:dlq") == 1

    assert "purged 1" in fleet("dlq", "purge", STREAM, "--yes")
    assert sync.xlen(f"{STREAM}:dlq") == 0


@pytest.fixture
def fleet(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
          monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """``connector-fleet ARGS`` in this process; its stdout (it must succeed)."""
    cli = FleetCli(capsys, monkeypatch, {"REDIS_URL": redis_server.url})

    def run(*args: str) -> str:
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def rules_file(path: Path, out_stream: str) -> Path:
    path.write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "forward",
        "match": {"stream": "signals", "type": "NOAA_WEATHER"},
        "steps": [{"id": "emit", "emit": {"stream": out_stream, "event": {
            "type": "weather.forwarded", "payload": {"id": "{{ payload.id }}"}}}}],
    }]}))
    return path


def polling_entry(item_id: str) -> dict[str, str]:
    return {"connector": "weather-noaa", "type": "NOAA_WEATHER", "item_id": item_id,
            "version": "v1", "payload": orjson.dumps({"id": item_id}).decode()}


def test_rules_run_and_reload_on_sighup_keeping_them_when_the_file_is_invalid(
    tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer,
) -> None:
    rules = rules_file(tmp_path / "rules.json", "out-1")
    consumer = ConnectorProcess(
        "rules", redis_url=redis_server.url, config=tmp_path / "connectors.json",
        log=tmp_path / "rules.log", env={"RULES_PATH": str(rules)},
        command=("connector-fleet", "consume", "--group", GROUP, "--consumer", "rules"))
    try:
        # The streams to read come from the rules.
        consumer.wait_for("consumer_started", streams=["signals"], timeout_s=30)
        sync.xadd("signals", polling_entry("a"))
        wait_until(lambda: sync.xlen("out-1") == 1)

        rules.write_text("{not json")
        consumer.signal(signal.SIGHUP)
        rejected = consumer.wait_for("rules_reload_rejected", timeout_s=30)
        assert "invalid JSON at line 1" in rejected["reason"]
        sync.xadd("signals", polling_entry("b"))
        wait_until(lambda: sync.xlen("out-1") == 2)  # the running rules stayed

        rules_file(rules, "out-2")  # a change of the file is enough: no signal
        consumer.wait_for("rules_reloaded", timeout_s=30)
        sync.xadd("signals", polling_entry("c"))
        wait_until(lambda: sync.xlen("out-2") == 1)
        [(_, fields)] = sync.xrange("out-2")
        assert "weather.forwarded" in str(fields) and '"c"' in str(fields)

        consumer.signal(signal.SIGTERM)
        assert consumer.wait(30) == 0
    finally:
        consumer.close()
    assert sync.xpending("signals", GROUP)["pending"] == 0


def test_invalid_rules_at_start_exit_78_naming_the_problem(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('{"version": 1, "rules": [{"name": "r", "steps": [{"wat": 1}]}]}')
    consumer = ConnectorProcess(
        "bad", redis_url=redis_server.url, config=tmp_path / "connectors.json",
        log=tmp_path / "bad.log", env={"RULES_PATH": str(rules)},
        command=("connector-fleet", "consume"))
    try:
        assert consumer.wait(30) == 78
        error = consumer.wait_for("config_invalid", timeout_s=30)
        assert "rules[0]" in error["error"]
    finally:
        consumer.close()


def test_metrics_and_status_show_the_group_its_lag_and_pending(
    sync: sync_redis.Redis, start: Start, tmp_path: Path, fleet: Fleet,
) -> None:
    for i in range(5):
        sync.xadd(STREAM, {"connector": "weather-noaa", "type": "NOAA_WEATHER", "n": str(i)})
    port = free_port()
    start("watched", "--max-in-flight", "2", "--metrics-port", str(port), sleep_s=60)
    wait_until(lambda: sync.llen(STARTED) == 2)

    def scraped() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    wait_until(lambda: f'consumer_group_pending{{group="{GROUP}",stream="{STREAM}"}} 2.0'
               in scraped())
    metrics = scraped()
    assert f'consumer_group_lag{{group="{GROUP}",stream="{STREAM}"}} 3.0' in metrics
    assert ('event_source_received_total{connector="NOAA_WEATHER",source_id="weather-noaa"} 2.0'
            in metrics)
    assert f'consumer_dead_letters{{stream="{STREAM}"}} 0.0' in metrics

    (tmp_path / "connectors.json").write_text('{"connectors": []}')
    status = fleet("--config", str(tmp_path / "connectors.json"), "status")
    [row] = [line for line in status.splitlines() if line.startswith(STREAM)]
    assert row.split()[:7] == [STREAM, GROUP, "0", "2", "3", "watched", "2"]
    assert row.endswith("live")


def test_a_wide_in_flight_bound_does_not_exhaust_the_redis_connection_pool(
    sync: sync_redis.Redis, start: Start,
) -> None:
    # 250 handlers each sending a command at the same moment: more than the client's
    # default pool of 100 connections.
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(250)]
    consumer = start("wide", "--max-in-flight", "250", sleep_s=0.2)
    wait_until(lambda: sync.llen(DONE) == 250)
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 0
    assert sorted(sync.lrange(DONE, 0, -1)) == sorted(ids)
    assert not [e for e in consumer.events() if e.get("event") == "redis_unavailable"]
    assert not [e for e in consumer.events() if e.get("level") == "error"]


def test_kill_9_mid_rule_the_next_consumer_does_not_repeat_completed_steps(
    tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer,
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "two-steps", "match": {"stream": STREAM},
        "steps": [{"id": "quick", "call": "record", "params": {"step": "quick"}},
                  {"id": "slow", "call": "record", "params": {"step": "slow", "slow": True}}],
    }]}))
    sync.xadd(STREAM, polling_entry("a"))

    def consumer(name: str, sleep_s: float) -> ConnectorProcess:
        return ConnectorProcess(
            name, redis_url=redis_server.url, config=tmp_path / "connectors.json",
            log=tmp_path / f"{name}.log",
            env={"TEST_RULES_PATH": str(rules), "CAPABILITY_SLEEP_S": str(sleep_s),
                 "PYTHONPATH": str(REPO_ROOT)},
            command=("connector-fleet", "consume", "--stream", STREAM, "--group", GROUP,
                     "--consumer", name, "--start-id", "0", "--claim-idle-ms", "1000",
                     "--handler", "tests.consumer_handlers:rules"))

    first = consumer("first", sleep_s=60)
    second: ConnectorProcess | None = None
    try:
        wait_until(lambda: sync.llen(CALLS) == 2)  # quick done, slow running
        first.process.send_signal(signal.SIGKILL)
        first.wait()
        second = consumer("second", sleep_s=0)
        wait_until(lambda: sync.xpending(STREAM, GROUP)["pending"] == 0)
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    # The event's identity (connector, item_id, version), not the entry id (issue 14).
    key = f"{STREAM}:item:weather-noaa:a:v1:two-steps"
    assert Counter(sync.lrange(CALLS, 0, -1)) == Counter(
        {f"{key}:quick": 1, f"{key}:slow": 2})  # slow was cut short and ran again


def test_a_second_process_under_the_same_name_waits_until_the_first_stops(
    sync: sync_redis.Redis, start: Start,
) -> None:
    first = start("same", "--claim-idle-ms", "600")
    first.wait_for("consumer_started", timeout_s=30)
    second = start("same", "--claim-idle-ms", "600")
    second.wait_for("consumer_name_in_use", holder_pid=first.pid, timeout_s=30)
    entry_id = sync.xadd(STREAM, {"n": "0"})
    wait_until(lambda: sync.llen(DONE) == 1)
    assert sync.lrange(STARTED, 0, -1) == [f"same {entry_id}"]
    assert not [e for e in second.events() if e.get("event") == "consumer_started"]

    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    second.wait_for("consumer_started", timeout_s=30)
    later = sync.xadd(STREAM, {"n": "1"})
    wait_until(lambda: sync.llen(DONE) == 2)
    assert sync.lrange(DONE, 0, -1) == [entry_id, later]
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0


def test_a_second_sigterm_stops_at_once_exits_3_and_releases_the_entries(
    sync: sync_redis.Redis, start: Start,
) -> None:
    entry_id = sync.xadd(STREAM, {"n": "0"})
    consumer = start("impatient", sleep_s=60)
    wait_until(lambda: sync.llen(STARTED) == 1)
    consumer.signal(signal.SIGTERM)
    consumer.wait_for("draining", timeout_s=30)
    consumer.signal(signal.SIGTERM)
    assert consumer.wait(30) == 3
    consumer.wait_for("entries_released", entry_ids=[entry_id], timeout_s=30)
    [pending] = sync.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert pending["message_id"] == entry_id
    assert pending["time_since_delivered"] >= 30_000  # others may take it over at once


def test_burst_handles_what_is_there_and_exits_0(
    sync: sync_redis.Redis, start: Start,
) -> None:
    ids = [sync.xadd(STREAM, {"n": str(i)}) for i in range(30)]
    consumer = start("burst", "--burst", "--max-in-flight", "8", sleep_s=0.05)
    assert consumer.wait(30) == 0
    assert sorted(sync.lrange(DONE, 0, -1)) == sorted(ids)
    assert sync.xpending(STREAM, GROUP)["pending"] == 0
    consumer.wait_for("burst_done", timeout_s=30)
