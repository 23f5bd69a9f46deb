"""Driving real ``connector-run`` processes: start, signal, read their JSON logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def write_config(path: Path, *connectors: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps({"connectors": list(connectors)}, option=orjson.OPT_INDENT_2))
    return path


def noaa_entry(name: str, base_url: str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "type": "NOAA_WEATHER",
        "enabled": True,
        "pollIntervalMs": 100,
        "requestTimeoutMs": 2000,
        "maxRetries": 0,
        "leaseTtlSeconds": 2,
        "providerConfig": {"baseUrl": base_url, "area": "CA,OR", "severity": "Severe,Extreme"},
    }
    entry.update(overrides)
    return entry


class ConnectorProcess:
    """``connector-run NAME *args``, or any installed command given as ``command``."""

    def __init__(self, name: str, *, redis_url: str | None, config: Path, log: Path,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 command: tuple[str, ...] | None = None) -> None:
        self.log_path = log
        environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
        environment.update({"CONNECTORS_CONFIG_PATH": str(config), "LOG_LEVEL": "DEBUG",
                            "FLEET_DRAIN_TIMEOUT_S": "5"})
        if redis_url:
            environment["REDIS_URL"] = redis_url
        environment.update(env or {})
        self._log_file = log.open("wb")
        argv = [str(BIN / command[0]), *command[1:]] if command else [
            str(BIN / "connector-run"), name]
        self.process = subprocess.Popen(
            [*argv, *args],
            env=environment, cwd=REPO_ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                events.append({"event": "(not json)", "line": line.decode(errors="replace")})
        return events

    def wait_for(self, event: str, *, timeout_s: float = 30.0, after: int = 0,
                 **fields: Any) -> dict[str, Any]:
        """The first log event named ``event`` (from index ``after``) with ``fields``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.events()[after:]:
                if entry.get("event") == event and all(
                    entry.get(k) == v for k, v in fields.items()
                ):
                    return entry
            if self.process.poll() is not None and time.monotonic() > deadline - timeout_s + 0.5:
                break
            time.sleep(0.05)
        tail = "\n".join(orjson.dumps(e).decode() for e in self.events()[-15:])
        raise AssertionError(f"no {event} {fields} within {timeout_s} s; last log lines:\n{tail}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.kill()
        self._log_file.close()
