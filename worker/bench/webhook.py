"""``connector-fleet bench webhook``: requests/s the http-webhook receiver sustains with
p99 under 50 ms, against a bare aiohttp handler doing one XADD per request
(``webhook_bare``).

Each system runs as its own process (the receiver as ``connector-run``, with bearer
auth, a JSON Schema and idempotency keys on: what a real endpoint pays), on one
private Redis. A closed loop of C concurrent senders posts for ``duration`` seconds
at each C; the row of a C gives requests/s, p50 and p99. The summary is, per system,
the best requests/s among the Cs whose p99 stayed under the bound. Each run is a
fresh process (``worker.bench.repeat``): the report gives median (min–max).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from framework.testing import RedisServer, free_port
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, summarize

P99_BOUND_MS = 50.0
TOKEN = "bench-token-0123456789"
_KEY_FIELDS = ("system", "concurrency")
_BODY = orjson.dumps({"sensor": "bench-1", "reading": 21.5, "note": "x" * 200})


def run_webhook_bench(concurrency: list[int], duration_s: float, runs: int) -> int:
    params = {"concurrency": concurrency, "duration_s": duration_s}
    timeout_s = 120 + 2 * len(concurrency) * duration_s * 2
    repeated = repeat_in_fresh_processes("webhook", params, runs, timeout_s=timeout_s)
    print(repeated.describe())
    print_webhook_report(summarize(repeated.runs, _KEY_FIELDS))
    return 0


def measure(params: Row) -> list[Row]:
    rows: list[Row] = []
    with RedisServer() as redis, tempfile.TemporaryDirectory() as scratch:
        for system in ("connector-fleet", "bare-aiohttp"):
            port = free_port()
            with _serving(system, port, redis.url, Path(scratch)):
                url = f"http://127.0.0.1:{port}/webhook"
                for level in params["concurrency"]:
                    rows.append({"system": system, "concurrency": level,
                                 **asyncio.run(_load(url, level, params["duration_s"]))})
    return rows


@contextmanager
def _serving(system: str, port: int, redis_url: str, scratch: Path) -> Iterator[None]:
    if system == "bare-aiohttp":
        command = [sys.executable, "-m", "worker.bench.webhook_bare", str(port), redis_url]
        env: dict[str, str] = {}
    else:
        config = scratch / "connectors.json"
        config.write_bytes(orjson.dumps({"connectors": [_entry(port)]}))
        command = [str(Path(sys.executable).parent / "connector-run"), "bench-hooks"]
        env = {"CONNECTORS_CONFIG_PATH": str(config), "REDIS_URL": redis_url,
               "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        asyncio.run(_until_answering(f"http://127.0.0.1:{port}/webhook", process))
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _entry(port: int) -> dict[str, Any]:
    return {"name": "bench-hooks", "type": "http-webhook", "providerConfig": {
        "host": "127.0.0.1", "port": port,
        "auth": {"mode": "bearer", "secrets": {"bench": TOKEN}},
        "schema": {"type": "object", "required": ["sensor", "reading"]},
        "event": {"nodeIdPath": "sensor", "valuePath": "reading"}}}


def _headers(n: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
            "Idempotency-Key": f"req-{n}"}


async def _until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(60), aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bench webhook: {process.args!r} exited {process.returncode}")
            try:
                async with session.post(url, data=_BODY, headers=_headers(-1)) as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def _load(url: str, concurrency: int, duration_s: float) -> Row:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(10**12))
    ends = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            nonlocal failures
            while time.monotonic() < ends:
                started = time.perf_counter()
                async with session.post(url, data=_BODY, headers=_headers(next(counter))) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                        continue
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {"requests_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
            "failed": failures}


def print_webhook_report(rows: list[SummaryRow]) -> None:
    print("requests/s, p50 and p99 (ms) per concurrency; each request answered 200 only once "
          "in the stream")
    print(f"{'system':>16} | {'concurrency':>11} | {'requests/s':>22} | {'p50 ms':>18} | "
          f"{'p99 ms':>18} | failed")
    for row in rows:
        print(f"{row.key['system']:>16} | {row.key['concurrency']:>11} | "
              f"{row.cell('requests_per_s'):>22} | {row.cell('p50_ms', '.1f'):>18} | "
              f"{row.cell('p99_ms', '.1f'):>18} | {row.cell('failed')}")
    best = {system: _best_within_bound(rows, system) for system in
            ("connector-fleet", "bare-aiohttp")}
    print(f"best requests/s with median p99 < {P99_BOUND_MS:.0f} ms: " + ", ".join(
        f"{system} {value:,.0f}" if value else f"{system} none" for system, value in best.items()))
    if best["connector-fleet"] and best["bare-aiohttp"]:
        print(f"ratio: {best['connector-fleet'] / best['bare-aiohttp']:.2f}x the bare handler")


def _best_within_bound(rows: list[SummaryRow], system: str) -> float | None:
    fits = [row.spreads["requests_per_s"].median for row in rows
            if row.key["system"] == system and "p99_ms" in row.spreads
            and row.spreads["p99_ms"].median < P99_BOUND_MS]
    return max(fits) if fits else None
