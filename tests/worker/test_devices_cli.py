"""``connector-fleet devices``: import (with bad rows), list, show, group timeouts and
maintenance windows, on a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as sync_redis

from framework.testing import RedisServer
from worker.cli import run_fleet_command
from worker.exit_codes import ExitCode


@pytest.fixture(autouse=True)
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)


def test_import_list_show(sync: sync_redis.Redis, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "meters.csv"
    csv_file.write_text("id,group,tags\nm-1,north,site:a;v2\n../m,north,\nm-2,south,\n")
    assert run_fleet_command(["devices", "import", str(csv_file)]) == ExitCode.FAILURE
    out, err = capsys.readouterr()
    assert "imported 2 devices; 1 problems" in out
    assert f"{csv_file}: line 3: id: expected 1 to 128" in err
    assert run_fleet_command(["devices", "list", "--group", "north", "--json"]) == ExitCode.OK
    listed = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed["devices"]] == ["m-1"]
    assert run_fleet_command(["devices", "show", "m-1"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["tags"] == ["site:a", "v2"]
    assert run_fleet_command(["devices", "show", "m-9"]) == ExitCode.FAILURE
    assert "no device m-9" in capsys.readouterr().err
    assert run_fleet_command(["devices", "list"]) == ExitCode.OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "GROUP", "STATUS", "LAST", "SEEN", "TAGS"]
    assert [line.split()[0] for line in table[1:]] == ["m-1", "m-2"]


def test_groups_and_maintenance_windows(sync: sync_redis.Redis,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert run_fleet_command(["devices", "groups", "set-timeout", "north", "--for",
                              "2h"]) == ExitCode.OK
    assert sync.hget("fleet:{devices}:timeouts", "north") == "7200000"
    assert run_fleet_command(["devices", "groups", "set-timeout", "north", "--for",
                              "soon"]) == ExitCode.USAGE
    assert "--for: expected a duration" in capsys.readouterr().err
    assert run_fleet_command(["devices", "maintenance", "add", "north", "--for", "3h",
                              "--reason", "planned outage"]) == ExitCode.OK
    window_id = capsys.readouterr().out.split(":")[0]
    assert window_id.startswith("mw_")
    assert run_fleet_command(["devices", "maintenance", "add", "north", "--start",
                              "yesterday", "--for", "1h", "--reason", "x"]) == ExitCode.USAGE
    assert "--start: expected an ISO 8601 time" in capsys.readouterr().err
    assert run_fleet_command(["devices", "maintenance", "list"]) == ExitCode.OK
    assert window_id in capsys.readouterr().out
    assert run_fleet_command(["devices", "maintenance", "remove", "north",
                              window_id]) == ExitCode.OK
    assert run_fleet_command(["devices", "maintenance", "remove", "north",
                              window_id]) == ExitCode.FAILURE
