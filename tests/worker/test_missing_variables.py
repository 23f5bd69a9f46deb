"""One entry whose ``${VAR}`` has no value stops that connector only: the others of
the file run (``connector-run``, ``run-all`` in both modes), and it is reported
with the variable and the field."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.testing import RedisServer, ReplayServer, Reply
from tests.noaa_feed import ChangingFeed
from tests.process import ConnectorProcess, noaa_entry, write_config

MISSING = "BAD_SOURCE_TOKEN_NOT_SET"


@pytest.fixture
def config(tmp_path: Path, replay: ReplayServer) -> Path:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    bad = noaa_entry("bad", replay.url)
    bad["providerConfig"]["userAgent"] = "fleet ${" + MISSING + "}"
    return write_config(tmp_path / "c.json", noaa_entry("good", replay.url), bad)


@pytest.fixture
def start(tmp_path: Path, redis_server: RedisServer) -> Iterator[object]:
    started: list[ConnectorProcess] = []

    def _start(config: Path, name: str, *args: str,
               command: tuple[str, ...] | None = None) -> ConnectorProcess:
        process = ConnectorProcess(name, redis_url=redis_server.url, config=config,
                                   log=tmp_path / f"{name}-{len(started)}.log", args=args,
                                   command=command)
        started.append(process)
        return process

    yield _start
    for process in started:
        process.close()


def test_connector_run_runs_the_good_entry_and_refuses_the_bad_one(
    config: Path, start: object,
) -> None:
    good = start(config, "good", "--once")  # type: ignore[operator]
    bad = start(config, "bad", "--once")  # type: ignore[operator]

    assert good.wait() == 0
    good.wait_for("poll_completed")
    assert bad.wait() == 78
    error = bad.wait_for("config_invalid", connector="bad")["error"]
    assert error.startswith("connector bad: environment variable " + MISSING)
    assert "providerConfig.userAgent" in error


@pytest.mark.slow
@pytest.mark.parametrize("mode", [(), ("--in-process",)], ids=["supervisor", "in-process"])
def test_run_all_runs_the_good_entry_and_reports_the_bad_one(
    config: Path, start: object, mode: tuple[str, ...],
) -> None:
    fleet = start(config, "fleet", *mode,  # type: ignore[operator]
                  command=("connector-fleet", "run-all"))

    reported = fleet.wait_for("connector_config_invalid", connector="bad")
    fleet.wait_for("poll_completed", connector="good")

    assert MISSING in reported["error"] and "providerConfig.userAgent" in reported["error"]
    assert fleet.process.poll() is None  # still running the good one
    assert not [e for e in fleet.events() if e.get("connector") == "bad"
                and e.get("event") in ("worker_started", "child_started")]


@pytest.mark.slow
def test_a_variable_gone_at_reload_keeps_the_running_connector(
    tmp_path: Path, replay: ReplayServer, start: object,
) -> None:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    path = write_config(tmp_path / "reload.json", noaa_entry("good", replay.url))
    fleet = start(path, "fleet", command=("connector-fleet", "run-all"))  # type: ignore[operator]
    fleet.wait_for("child_started", connector="good")
    fleet.wait_for("poll_completed", connector="good")

    entry = noaa_entry("good", replay.url)
    entry["providerConfig"]["userAgent"] = "fleet ${" + MISSING + "}"
    write_config(path, entry)
    fleet.signal(signal.SIGHUP)
    reported = fleet.wait_for("connector_config_invalid", connector="good")
    after = len(fleet.events())
    fleet.wait_for("poll_completed", connector="good", after=after)

    assert MISSING in reported["error"]
    assert not [e for e in fleet.events() if e.get("event") == "child_stopping"]
