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

    @property
    def venv(self) -> Path:
        return REPO_ROOT / f".venv-bench-{self.name}"

    @property
    def script(self) -> Path:
        return REPO_ROOT / "scripts" / "bench" / f"{self.name}_baseline.py"

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        if not (self.venv / "bin" / "python").exists():
            return f"{self.venv} is missing (run scripts/setup --bench)"
        return None


PEERS = {name: Peer(name) for name in ("celery", "arq", "faststream", "taskiq")}


def run_peer(peer: Peer, url: str, args: list[str]) -> dict[str, Any] | None:
    """The peer's JSON line, or None (the reason on stderr) if it is missing or failed."""
    reason = peer.missing()
    if reason is None:
        command = [str(peer.venv / "bin" / "python"), str(peer.script), "--redis-url", url, *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=PEER_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            reason = f"took over {PEER_TIMEOUT_S:.0f} s"
        else:
            lines = done.stdout.strip().splitlines()
            if done.returncode == 0 and lines:
                result: dict[str, Any] = orjson.loads(lines[-1])
                return result
            reason = f"exit {done.returncode}: {done.stderr.strip()[-2000:]}"
    print(f"bench consume: {peer.name} skipped ({' '.join(args)}): {reason}",
          file=sys.stderr, flush=True)
    return None
