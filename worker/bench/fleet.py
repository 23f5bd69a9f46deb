"""``connector-fleet bench fleet``: ``run-all`` with many connectors on this machine.

Each connector polls its own path of a local HTTP server every second. Once all
of them poll, the benchmark measures for a while: memory of the whole process
tree (RSS, and PSS, which shares pages fairly between processes), CPU used, and
schedule jitter: how late each poll started compared with its slot on the
connector's schedule, as the workers report it (``start_delay_ms`` of their
``poll_completed`` events), and the slots skipped because a poll started too late.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from framework.testing import RedisServer, ReplayServer, Reply
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, summarize

_INTERVAL_S = 1.0
_KEY_FIELDS = ("mode", "connectors")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class FleetResult:
    mode: str
    connectors: int
    startup_s: float
    processes: int
    rss_mb: float
    pss_mb: float
    cpu_percent: float
    jitter_p50_ms: float
    jitter_p99_ms: float
    jitter_max_ms: float
    polls: int
    missed_slots: int
    pss_per_connector_mb: float


def _feed(index: int) -> dict[str, object]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "id": f"https://api.weather.gov/alerts/bench-{index}-{n}",
                "type": "Feature",
                "geometry": None,
                "properties": {
                    "id": f"bench-{index}-{n}",
                    "event": "Test Warning",
                    "severity": "Severe",
                    "sent": "2026-11-20T14:00:00Z",
                },
            }
            for n in range(5)
        ],
    }


def _config(path: Path, count: int, url: str) -> None:
    connectors = [
        {
            "name": f"bench-{i}",
            "type": "NOAA_WEATHER",
            "pollIntervalMs": int(_INTERVAL_S * 1000),
            "requestTimeoutMs": 5000,
            "maxRetries": 0,
            "leaseTtlSeconds": 30,
            "outputStream": "bench-signals",
            "providerConfig": {"baseUrl": url, "alertsPath": f"/c{i}/alerts"},
        }
        for i in range(count)
    ]
    path.write_bytes(orjson.dumps({"connectors": connectors}))


def _tree(root: int) -> list[int]:
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(entry.name))
    return pids


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def _memory_kb(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "Rss":
                rss += int(value.split()[0])
            elif key == "Pss":
                pss += int(value.split()[0])
    return rss, pss


def _schedule_lateness(log: Path, start: int, end: int) -> tuple[list[float], int]:
    """Start delays (ms) and skipped slots reported between two offsets of the log."""
    with log.open("rb") as lines:
        lines.seek(start)
        chunk = lines.read(end - start)
    delays, skipped = [], 0
    for line in chunk.splitlines():
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("event") == "poll_completed":
            delays.append(float(event["start_delay_ms"]))
        elif event.get("event") == "poll_overran_interval":
            skipped += int(event["skipped_slots"])
    return delays, skipped


def _measure(mode: str, count: int, duration_s: float) -> FleetResult:
    with (
        RedisServer() as redis_server,
        ReplayServer() as http,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for i in range(count):
            http.route(f"/c{i}/alerts", Reply(body=_feed(i)))
        config = Path(tmp) / "connectors.json"
        _config(config, count, http.url)
        command = [str(Path(sys.executable).parent / "connector-fleet"), "run-all"]
        if mode == "in-process":
            command.append("--in-process")
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "CONNECTORS_CONFIG_PATH": str(config),
            "LOG_LEVEL": "INFO",
        }
        log = Path(tmp) / "fleet.log"
        started = time.monotonic()
        with log.open("wb") as out:
            fleet = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while any(not http.requests_to(f"/c{i}/alerts") for i in range(count)):
                if fleet.poll() is not None:
                    raise RuntimeError(f"run-all exited with {fleet.returncode}")
                time.sleep(0.2)
            startup_s = time.monotonic() - started
            time.sleep(2 * _INTERVAL_S)  # let every schedule settle
            pids = _tree(fleet.pid)
            window_start, ticks_start = time.monotonic(), _cpu_ticks(pids)
            log_start = log.stat().st_size
            time.sleep(duration_s)
            ticks = _cpu_ticks(pids) - ticks_start
            elapsed = time.monotonic() - window_start
            rss_kb, pss_kb = _memory_kb(pids)
            jitter, missed = _schedule_lateness(log, log_start, log.stat().st_size)
        finally:
            fleet.send_signal(signal.SIGTERM)
            fleet.wait(timeout=120)
    jitter.sort()
    return FleetResult(
        mode=mode,
        connectors=count,
        startup_s=startup_s,
        processes=len(pids),
        rss_mb=rss_kb / 1024,
        pss_mb=pss_kb / 1024,
        cpu_percent=100 * ticks / _CLOCK_TICKS / elapsed,
        jitter_p50_ms=statistics.median(jitter),
        jitter_p99_ms=jitter[min(len(jitter) - 1, int(0.99 * len(jitter)))],
        jitter_max_ms=jitter[-1],
        polls=len(jitter),
        missed_slots=missed,
        pss_per_connector_mb=pss_kb / 1024 / count,
    )


def measure(params: Row) -> list[Row]:
    """One run (in the process ``worker.bench.once`` started): each count in each mode."""
    return [
        asdict(_measure(mode, count, params["duration_s"]))
        for count in params["counts"]
        for mode in params["modes"]
    ]


def run_fleet_bench(counts: list[int], modes: list[str], duration_s: float, runs: int) -> int:
    params = {"counts": counts, "modes": modes, "duration_s": duration_s}
    repeated = repeat_in_fresh_processes("fleet", params, runs, timeout_s=3600)
    print(repeated.describe())
    print(
        f"{'mode':<10} {'conn':>5} {'procs':>9} {'start s':>16} {'RSS MB':>18} "
        f"{'PSS MB':>18} {'PSS/conn':>16} {'CPU %':>16} {'jit p50 ms':>16} "
        f"{'jit p99 ms':>16} {'jit max ms':>16} {'missed':>10}"
    )
    for r in summarize(repeated.runs, _KEY_FIELDS):
        print(
            f"{r.key['mode']:<10} {r.key['connectors']:>5} {r.cell('processes'):>9} "
            f"{r.cell('startup_s', '.1f'):>16} {r.cell('rss_mb'):>18} {r.cell('pss_mb'):>18} "
            f"{r.cell('pss_per_connector_mb', '.1f'):>16} {r.cell('cpu_percent', '.1f'):>16} "
            f"{r.cell('jitter_p50_ms', '.1f'):>16} {r.cell('jitter_p99_ms', '.1f'):>16} "
            f"{r.cell('jitter_max_ms', '.1f'):>16} {r.cell('missed_slots'):>10}",
            flush=True,
        )
    return 0
