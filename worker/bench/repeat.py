"""Runs a benchmark several times (3 by default), each run in fresh processes, and
notes the load average at the start of each run: one run alone says little on a
shared machine, and a busy machine must show in the report.

A run is ``python -m worker.bench.once KIND PARAMS``: a new interpreter (no warm
caches, no garbage left by the previous run), which starts whatever else the
benchmark needs (Redis, workers, peers) itself and prints its rows as JSON.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.bench.stats import Row

DEFAULT_RUNS = 3
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Repeated:
    """The rows of each run and the load average (1, 5, 15 min) at its start."""

    kind: str
    runs: list[list[Row]]
    load_averages: list[tuple[float, float, float]]

    def describe(self) -> str:
        loads = ", ".join(f"{load[0]:.2f}" for load in self.load_averages)
        return (
            f"bench {self.kind}: {len(self.runs)} run(s), each in fresh processes, "
            f"on {os.cpu_count()} cores; load average (1 min) at the start of each: "
            f"{loads}; figures are median (min–max) of the runs"
        )


def repeat_in_fresh_processes(kind: str, params: Row, runs: int, timeout_s: float) -> Repeated:
    """``runs`` runs of bench ``kind``, one after the other; a failed run stops the bench
    with an error that names the run (its stderr went to this process's stderr)."""
    if runs < 1:
        raise ValueError(f"bench {kind}: --runs must be at least 1, got {runs}")
    results: list[list[Row]] = []
    loads: list[tuple[float, float, float]] = []
    # SIGTERM unwinds (SystemExit), so that the run in progress is stopped with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"bench {kind}: stopped by SIGTERM"))
    for index in range(1, runs + 1):
        load = os.getloadavg()
        loads.append(load)
        print(
            f"bench {kind}: run {index} of {runs}, load average {load[0]:.2f} "
            f"{load[1]:.2f} {load[2]:.2f}",
            file=sys.stderr,
            flush=True,
        )
        results.append(run_once_in_fresh_process(kind, params, timeout_s, index))
    return Repeated(kind, results, loads)


def run_once_in_fresh_process(kind: str, params: Row, timeout_s: float, index: int) -> list[Row]:
    command = [sys.executable, "-m", "worker.bench.once", kind, orjson.dumps(params).decode()]
    run = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    try:
        stdout, _ = run.communicate(timeout=timeout_s)
    except BaseException as exc:  # timed out or interrupted: SIGTERM lets the run clean up
        run.terminate()
        run.communicate(timeout=60)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise RuntimeError(f"bench {kind}: run {index} took over {timeout_s:.0f} s") from None
        raise
    lines = stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench {kind}: run {index} failed (exit {run.returncode}); its errors are above"
        )
    rows: list[Row] = orjson.loads(lines[-1])
    return rows
