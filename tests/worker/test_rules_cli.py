"""``connector-fleet rules check``: every problem of the file, unresolved capabilities."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from framework.core.settings import Settings
from tests.conftest import REPO_ROOT
from worker.cli.output import Console
from worker.cli.rules import run_rules_command
from worker.exit_codes import ExitCode


def check(path: Path | None, settings: Settings | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_rules_command(argparse.Namespace(rules_command="check", path=path),
                             settings or Settings(), Console(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def test_the_example_rules_check_out() -> None:
    code, out, err = check(REPO_ROOT / "rules.json")
    assert code == ExitCode.OK
    assert "tank-temperature: streams sensor-readings; 4 steps; calls http_call@1.0.0" in out
    assert "3 rules OK" in out
    assert err == ""


def test_the_default_path_is_rules_json_beside_connectors_json(tmp_path: Path) -> None:
    (tmp_path / "rules.json").write_text(json.dumps({"rules": [
        {"name": "only", "match": {"stream": "s"}, "steps": [{"call": "log"}]}]}))
    settings = Settings(CONNECTORS_CONFIG_PATH=str(tmp_path / "connectors.json"))
    code, out, _ = check(None, settings)
    assert code == ExitCode.OK
    assert out.splitlines()[-1] == f"{tmp_path / 'rules.json'}: 1 rules OK, streams: s"


def test_problems_are_listed_with_exit_code_config(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [
        {"name": "a", "steps": [{"if": "x ==", "then": []}]},
        {"name": "b", "match": {"colour": "red"}, "steps": [{"call": "log"}]}]}))
    code, _, err = check(path)
    assert code == ExitCode.CONFIG
    assert "rule a (rules[0].steps[0].if): syntax error" in err
    assert "rule b (rules[1].match.colour): unknown key" in err


def test_unresolved_capabilities_are_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"name": "v", "steps": [
        {"id": "go", "call": "http_call", "version": "^9"}, {"call": "teleport"}]}]}))
    code, out, err = check(path)
    assert code == ExitCode.OK
    assert "http_call@^9 (unresolved)" in out
    assert "warning: rule v, step go: capability http_call: no registered version matches ^9" \
        in err
    assert "warning: rule v, step steps[1]: capability teleport: not registered" in err
