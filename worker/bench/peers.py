"""The peers of ``bench consume``: other Python systems doing the same no-op work on
the same Redis, each in its own virtualenv (``scripts/setup --bench`` makes them:
they pin redis-py versions that conflict with ours and with each other).

Each peer's script (``scripts/bench/<peer>_baseline.py``) starts its worker,
produces the load, waits until every event is done and prints one JSON line with
what its producer achieved; the completion records stay in ``bench:done``, and
``worker.bench.load`` computes every system's row from them. A peer whose
virtualenv is missing is skipped with that reason; a peer that fails is reported,
and the other systems still run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[2]
PEER_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Peer:
    name: str
    venv: Path
    script: Path

    @classmethod
    def named(cls, name: str) -> Peer:
        """The peer ``scripts/setup --bench`` installs as ``name``."""
        return cls(
            name,
            REPO_ROOT / f".venv-bench-{name}",
            REPO_ROOT / "scripts" / "bench" / f"{name}_baseline.py",
        )

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if not (self.venv / "bin" / "python").exists():
            return f"{self.venv} is missing (run scripts/setup --bench)"
        return None


PEERS = {name: Peer.named(name) for name in ("celery", "arq", "faststream", "taskiq")}


def run_peer(
    peer: Peer, url: str, args: list[str], timeout_s: float = PEER_TIMEOUT_S
) -> dict[str, Any] | None:
    """The peer's JSON line, or None (the reason on stderr) if it is missing or failed."""
    reason = peer.missing()
    if reason is None:
        command = [str(peer.venv / "bin" / "python"), str(peer.script), "--redis-url", url, *args]
        script = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            stdout, stderr = script.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_script(script)
            reason = f"took over {timeout_s:g} s"
        except BaseException:  # this run is being stopped: the peer's script stops too
            _stop_script(script)
            raise
        else:
            lines = stdout.strip().splitlines()
            if script.returncode == 0 and lines:
                result: dict[str, Any] = orjson.loads(lines[-1])
                return result
            reason = f"exit {script.returncode}: {_last_lines(stderr)}"
    print(
        f"bench consume: {peer.name} skipped ({' '.join(args)}): {reason}",
        file=sys.stderr,
        flush=True,
    )
    return None


def _stop_script(script: subprocess.Popen[str]) -> None:
    """SIGTERM first: the script then stops its worker (SIGKILL would orphan it)."""
    script.terminate()
    try:
        script.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        script.kill()
        # Not communicate(): a worker the script left behind may hold its pipes open.
        script.wait()


def _last_lines(text: str, count: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-count:])
