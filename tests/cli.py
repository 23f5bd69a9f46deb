"""``connector-fleet`` run in this process: argv in, exit code and output back.

Each command runs as the installed one does (parsing, settings from the
environment, its own event loop), only without a new interpreter per case.
From an async test, call it through ``asyncio.to_thread`` (a command runs its
own event loop)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from worker.cli import run_fleet_command

INSTALLED_CLI = str(Path(sys.executable).parent / "connector-fleet")


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


class FleetCli:
    """``connector-fleet ARGS`` with ``env`` set (a None value: unset) for the call."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                 env: dict[str, str | None]) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        self._env = env

    def __call__(self, *argv: str, env: dict[str, str | None] | None = None) -> CliRun:
        self._capsys.readouterr()  # only this command's output
        with self._monkeypatch.context() as patch:
            for name, value in {**self._env, **(env or {})}.items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, value)
            try:
                code = run_fleet_command(list(argv))
            except SystemExit as exc:  # argparse: bad usage or --help
                code = exc.code if isinstance(exc.code, int) else 2
        out, err = self._capsys.readouterr()
        return CliRun(code, out, err)


def installed_cli(*argv: str, env: dict[str, str],
                  timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``connector-fleet`` in a subprocess (the smoke test of a group)."""
    return subprocess.run([INSTALLED_CLI, *argv], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
