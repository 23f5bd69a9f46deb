"""``connector-fleet run-all``: real children, real signals, real HTTP and Redis."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.helpers import wait_until
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

pytestmark = pytest.mark.slow  # real processes, signals and restarts: seconds per test

NAMES = ("alpha", "beta", "gamma")


def entry(name: str, replay: ReplayServer, **overrides: Any) -> dict[str, Any]:
    base = noaa_entry(name, replay.url, **{"pollIntervalMs": 200, **overrides})
    base["providerConfig"]["alertsPath"] = f"/{name}/alerts"
    return base




def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def feeds(replay: ReplayServer) -> dict[str, ChangingFeed]:
    feeds = {}
    for name in (*NAMES, "delta"):
        feed = ChangingFeed(size=5)
        replay.route(f"/{name}/alerts", lambda _, f=feed: Reply(body=f.next_body()))
        feeds[name] = feed
    return feeds


@pytest.fixture
def fleet(tmp_path: Path, replay: ReplayServer, redis_server: RedisServer,
          feeds: dict[str, ChangingFeed], sync: sync_redis.Redis,
          ) -> Iterator[tuple[ConnectorProcess, Path, int]]:
    config = write_config(tmp_path / "connectors.json", *(entry(n, replay) for n in NAMES))
    port = free_port()
    supervisor = ConnectorProcess(
        "", redis_url=redis_server.url, config=config, log=tmp_path / "supervisor.log",
        command=("connector-fleet", "run-all"), args=("--metrics-port", str(port)),
        env={"FLEET_RESTART_BASE_S": "0.1", "FLEET_RESTART_MAX_S": "0.5"},
    )
    for name in NAMES:
        supervisor.wait_for("poll_completed", connector=name, timeout_s=60)
    yield supervisor, config, port
    supervisor.close()


def child_pids(supervisor: ConnectorProcess) -> dict[str, int]:
    pids = {}
    for event in supervisor.events():
        if event["event"] == "child_started":
            pids[event["connector"]] = event["pid"]
    return pids


def test_every_enabled_connector_runs_in_its_own_process(
    fleet: tuple[ConnectorProcess, Path, int], sync: sync_redis.Redis,
) -> None:
    supervisor, _, _ = fleet
    pids = child_pids(supervisor)
    assert sorted(pids) == sorted(NAMES) and len(set(pids.values())) == 3
    for name in NAMES:
        assert f":{pids[name]}:" in sync.get(f"lease:{name}")
    connectors = {f["connector"] for _, f in sync.xrange("raw-input-signals")}
    assert connectors == set(NAMES)


def test_a_killed_child_is_restarted_and_publishes_again(
    fleet: tuple[ConnectorProcess, Path, int], feeds: dict[str, ChangingFeed],
) -> None:
    supervisor, _, _ = fleet
    old_pid = child_pids(supervisor)["beta"]
    mark = len(supervisor.events())

    os.kill(old_pid, signal.SIGKILL)

    exited = supervisor.wait_for("child_exited", after=mark, connector="beta")
    assert exited["exit_code"] == -signal.SIGKILL
    restarted = supervisor.wait_for("child_started", after=mark, connector="beta")
    assert restarted["pid"] != old_pid
    # Its old lease must expire (2 s TTL) before the new child may publish.
    supervisor.wait_for("poll_completed", after=mark, connector="beta", timeout_s=60)


def test_sighup_reconciles_added_disabled_and_changed_connectors(
    fleet: tuple[ConnectorProcess, Path, int], replay: ReplayServer, sync: sync_redis.Redis,
) -> None:
    supervisor, config, _ = fleet
    gamma_pid = child_pids(supervisor)["gamma"]
    mark = len(supervisor.events())
    write_config(config, entry("alpha", replay, pollIntervalMs=300), entry("beta", replay),
                 entry("gamma", replay, enabled=False), entry("delta", replay))

    supervisor.signal(signal.SIGHUP)

    supervisor.wait_for("child_reloaded", after=mark, connector="alpha")
    supervisor.wait_for("config_reloaded", after=mark, connector="alpha")
    supervisor.wait_for("child_stopping", after=mark, connector="gamma")
    supervisor.wait_for("worker_stopped", after=mark, connector="gamma")
    supervisor.wait_for("poll_completed", after=mark, connector="delta", timeout_s=60)
    wait_until(lambda: not alive(gamma_pid))
    assert sync.get("lease:gamma") is None
    assert not any(e["event"] == "child_reloaded" and e["connector"] == "beta"
                   for e in supervisor.events()[mark:])


def test_a_config_file_change_is_picked_up_without_a_signal(
    fleet: tuple[ConnectorProcess, Path, int], replay: ReplayServer,
) -> None:
    supervisor, config, _ = fleet
    mark = len(supervisor.events())

    write_config(config, *(entry(n, replay) for n in NAMES), entry("delta", replay))

    supervisor.wait_for("config_file_changed", after=mark)
    supervisor.wait_for("poll_completed", after=mark, connector="delta", timeout_s=60)


def test_an_invalid_new_config_changes_nothing(
    fleet: tuple[ConnectorProcess, Path, int],
) -> None:
    supervisor, config, port = fleet
    pids = child_pids(supervisor)
    mark = len(supervisor.events())
    config.write_text('{"connectors": [{"name": "alpha", "type": "NO_SUCH_TYPE"}]}')

    supervisor.signal(signal.SIGHUP)

    rejected = supervisor.wait_for("reload_rejected", after=mark)
    assert "unknown type 'NO_SUCH_TYPE'" in rejected["reason"]
    assert all(alive(pid) for pid in pids.values())
    names = [c["name"] for c in httpx.get(f"http://127.0.0.1:{port}/metrics/connectors").json()]
    assert names == list(NAMES)


def test_sigterm_drains_every_child_and_leaves_no_orphan(
    fleet: tuple[ConnectorProcess, Path, int], sync: sync_redis.Redis,
) -> None:
    supervisor, _, _ = fleet
    pids = child_pids(supervisor)

    supervisor.signal(signal.SIGTERM)

    assert supervisor.wait(timeout_s=60) == 0
    assert [name for name, pid in pids.items() if alive(pid)] == []
    for name in NAMES:
        supervisor.wait_for("lease_released", connector=name)
        assert sync.get(f"lease:{name}") is None


def test_children_die_with_a_killed_supervisor(
    fleet: tuple[ConnectorProcess, Path, int],
) -> None:
    supervisor, _, _ = fleet
    pids = child_pids(supervisor)

    supervisor.signal(signal.SIGKILL)
    supervisor.wait()

    wait_until(lambda: not any(alive(pid) for pid in pids.values()), timeout_s=10)


def test_ops_api_reports_metrics_leases_and_health(
    fleet: tuple[ConnectorProcess, Path, int],
) -> None:
    supervisor, _, port = fleet
    api = f"http://127.0.0.1:{port}"
    pids = child_pids(supervisor)

    everyone = httpx.get(f"{api}/metrics/connectors").json()
    alpha = httpx.get(f"{api}/metrics/connectors/alpha").json()
    health = httpx.get(f"{api}/health/connectors")
    prometheus = httpx.get(f"{api}/metrics").text

    assert [c["name"] for c in everyone] == list(NAMES)
    assert alpha["connectorName"] == "alpha" and alpha["successfulPolls"] >= 1
    assert f":{pids['alpha']}:" in alpha["leaseHolder"] and 0 < alpha["leaseTtlMs"] <= 2000
    assert alpha["supervisor"]["state"] == "running" and alpha["supervisor"]["pid"] == pids["alpha"]
    assert health.status_code == 200 and health.json()["healthy"] is True
    assert httpx.get(f"{api}/metrics/connectors/nope").status_code == 404
    assert httpx.get(f"{api}/healthz").status_code == 200
    assert httpx.get(f"{api}/readyz").json() == {"status": "ready"}
    for name in NAMES:  # the children's series, added up by the supervisor
        assert f'connector_polls_total{{connector="{name}",outcome="success"}}' in prometheus
        assert f'connector_lease_held{{connector="{name}"}} 1.0' in prometheus
    assert 'connector_poll_duration_seconds_bucket{connector="alpha"' in prometheus


def test_a_failing_source_and_a_crash_loop_make_health_503(
    fleet: tuple[ConnectorProcess, Path, int], replay: ReplayServer,
) -> None:
    supervisor, _, port = fleet
    replay.route("/beta/alerts", Reply(500, {"title": "down"}))
    for _ in range(6):  # kill gamma as soon as it starts, again and again
        pid = child_pids(supervisor)["gamma"]
        mark = len(supervisor.events())
        os.kill(pid, signal.SIGKILL)
        supervisor.wait_for("child_started", after=mark, connector="gamma")

    looping = supervisor.wait_for("child_crash_looping", connector="gamma")
    assert looping["consecutive_failures"] >= 5

    def report() -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{port}/health/connectors").json()

    wait_until(lambda: not report()["connectors"]["beta"]["healthy"], timeout_s=60)
    response = httpx.get(f"http://127.0.0.1:{port}/health/connectors")
    assert response.status_code == 503
    body = response.json()
    assert "no successful poll within 3 intervals" in body["connectors"]["beta"]["reason"]
    assert body["connectors"]["gamma"]["reason"].startswith("crash looping")
    assert body["connectors"]["alpha"] == {"healthy": True, "reason": None}


def test_in_process_mode_runs_every_connector_with_its_own_lease(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer,
    feeds: dict[str, ChangingFeed], sync: sync_redis.Redis,
) -> None:
    config = write_config(tmp_path / "connectors.json", *(entry(n, replay) for n in NAMES))
    fleet = ConnectorProcess("", redis_url=redis_server.url, config=config,
                             log=tmp_path / "fleet.log",
                             command=("connector-fleet", "run-all", "--in-process"))
    try:
        for name in NAMES:
            fleet.wait_for("poll_completed", connector=name, timeout_s=60)
        holders = {sync.get(f"lease:{name}") for name in NAMES}
        assert len(holders) == 3 and all(f":{fleet.pid}:" in h for h in holders)

        mark = len(fleet.events())
        write_config(config, entry("alpha", replay), entry("beta", replay, enabled=False),
                     entry("gamma", replay), entry("delta", replay))
        fleet.signal(signal.SIGHUP)
        fleet.wait_for("connector_disabled", after=mark, connector="beta")
        fleet.wait_for("worker_stopped", after=mark, connector="beta")
        fleet.wait_for("poll_completed", after=mark, connector="delta", timeout_s=60)
        assert sync.get("lease:beta") is None

        fleet.signal(signal.SIGTERM)
        assert fleet.wait() == 0
        assert [n for n in ("alpha", "gamma", "delta") if sync.get(f"lease:{n}")] == []
    finally:
        fleet.close()
