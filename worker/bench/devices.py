"""``bench devices``: heartbeat-absence detection with 100,000 and 1,000,000 devices.

Per fleet size, two systems in the same run:

* ``registry+watchdog``: heartbeats into the device registry (``heartbeat.lua``,
  200 per call) on a private redis-server, then the watchdog (its real loop, real
  clock, default 0.25 s interval, 500 per batch) while 1% of the devices go silent,
  their deadlines spread over ``window_s`` seconds;
* ``timer-per-device``: the naive baseline, in this process: one asyncio timer
  (``loop.call_later``) per device, cancelled and re-armed on each heartbeat, with
  last-seen in a dict. It is the least work the job needs in one process: it keeps
  nothing in Redis, so a restart forgets every device and two replicas would both
  report each absence.

Figures: heartbeats/s ingested; detection delay (found - deadline) p50/p99 in ms;
CPU µs per heartbeat (this process plus, for the registry, redis-server); memory per
device in bytes (Redis ``used_memory``, or this process's RSS for the timers).

Then, with ``--ota-devices N`` (default 10,000), one OTA wave over N simulated devices
against bare request/response (:mod:`worker.bench.devices_ota`): devices/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import resource
import time

from redis.asyncio import Redis

from framework.core import SystemClock, create_redis
from framework.testing import RedisServer
from providers.devices import DeviceRegistry, Heartbeat, SweepResult, Watchdog
from worker.bench import devices_ota
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, SummaryRow, percentile, summarize

_KEY_FIELDS = ("devices", "system")
SILENT_RATIO = 0.01
HEALTHY_TIMEOUT_S = 1800.0
CHUNK = 10_000  # heartbeats built and sent per step (bounded memory on the client)


def run_devices_bench(devices: list[int], window_s: float, runs: int, ota_devices: int = 0
                      ) -> int:
    """Absence detection per fleet size, then (``ota_devices`` > 0) one OTA wave."""
    params: Row = {"devices": devices, "window_s": window_s, "ota_devices": ota_devices}
    repeated = repeat_in_fresh_processes(
        "devices", params, runs, timeout_s=120 + sum(devices) / 2_000 + ota_devices / 10)
    print(repeated.describe())
    print_devices_report(summarize(repeated.runs, _KEY_FIELDS))
    return 0


def measure(params: Row) -> list[Row]:
    rows: list[Row] = []
    for count in params["devices"]:
        with RedisServer() as server:
            rows.append(asyncio.run(_registry_row(server.url, count, params["window_s"])))
        gc.collect()
        rows.append(asyncio.run(_timers_row(count, params["window_s"])))
        gc.collect()
    if params.get("ota_devices"):
        rows += devices_ota.measure({"devices": params["ota_devices"]})
    return rows


def _silent_deadline_offsets(count: int, window_s: float) -> dict[int, float]:
    """Device index -> seconds from now to its deadline, for the 1% that go silent."""
    chosen = random.Random(count).sample(range(count), max(1, int(count * SILENT_RATIO)))
    return {index: 1.0 + window_s * n / len(chosen) for n, index in enumerate(sorted(chosen))}


async def _registry_row(url: str, count: int, window_s: float) -> Row:
    redis = create_redis(url)
    try:
        clock = SystemClock()
        registry = DeviceRegistry(redis, clock=clock)
        memory_before = await _redis_memory(redis)
        cpu_before = time.process_time(), await _redis_cpu_s(redis)
        started = time.perf_counter()
        silent = await _ingest(registry, count, window_s)
        elapsed = time.perf_counter() - started
        cpu_s = (time.process_time() - cpu_before[0]) + (await _redis_cpu_s(redis) - cpu_before[1])
        memory = await _redis_memory(redis) - memory_before
        delays = await _watch(redis, clock, len(silent), window_s)
    finally:
        await redis.aclose()
    return {"devices": count, "system": "registry+watchdog", "heartbeats_per_s": count / elapsed,
            "delay_p50_ms": _percentile(delays, 50), "delay_p99_ms": _percentile(delays, 99),
            "cpu_us_per_heartbeat": cpu_s / count * 1e6, "bytes_per_device": memory / count,
            "absences": len(delays), "expected": len(silent)}


async def _ingest(registry: DeviceRegistry, count: int, window_s: float) -> dict[int, float]:
    """One heartbeat per device: the healthy ones first, then the silent 1%, last seen
    so long ago that their deadlines fall in the window that starts after the ingest."""
    silent = _silent_deadline_offsets(count, window_s)
    healthy = [index for index in range(count) if index not in silent]
    for start in range(0, len(healthy), CHUNK):
        await registry.heartbeats([Heartbeat(f"dev-{index:07d}", timeout_s=HEALTHY_TIMEOUT_S)
                                   for index in healthy[start:start + CHUNK]])
    timeout_s, now_s = 60.0, time.time()
    await registry.heartbeats([Heartbeat(f"dev-{index:07d}", timeout_s=timeout_s,
                                         seen_at_s=now_s - timeout_s + offset_s)
                               for index, offset_s in silent.items()])
    return silent


async def _watch(redis: Redis, clock: SystemClock, expected: int, window_s: float) -> list[float]:
    delays: list[float] = []
    all_found = asyncio.Event()

    def record(result: SweepResult | None) -> None:
        if result is not None:
            delays.extend(result.delays_ms)
        if len(delays) >= expected:
            all_found.set()

    watchdog = Watchdog(redis, clock=clock, on_step=record)
    task = asyncio.create_task(watchdog.run())
    try:
        with contextlib.suppress(TimeoutError):  # the row shows how many were found
            await asyncio.wait_for(all_found.wait(), timeout=window_s + 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watchdog.release()
    return [float(d) for d in delays]


async def _timers_row(count: int, window_s: float) -> Row:
    loop = asyncio.get_running_loop()
    silent = _silent_deadline_offsets(count, window_s)
    delays: list[float] = []
    last_seen: dict[str, float] = {}
    timers: dict[str, asyncio.TimerHandle] = {}
    deadlines: dict[str, float] = {}
    all_found = asyncio.Event()

    def absent(device_id: str) -> None:
        delays.append((loop.time() - deadlines[device_id]) * 1000)
        del timers[device_id]
        if len(delays) >= len(silent):
            all_found.set()

    rss_before = _rss_bytes()
    cpu_before = time.process_time()
    started = time.perf_counter()
    # The same order as the registry's: the healthy devices, then the silent ones.
    order = [i for i in range(count) if i not in silent] + list(silent)
    for index in order:
        device_id = f"dev-{index:07d}"
        timeout_s = silent.get(index, HEALTHY_TIMEOUT_S)
        last_seen[device_id] = time.time()
        old = timers.get(device_id)
        if old is not None:
            old.cancel()
        deadlines[device_id] = loop.time() + timeout_s
        timers[device_id] = loop.call_later(timeout_s, absent, device_id)
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_before
    memory = _rss_bytes() - rss_before
    with contextlib.suppress(TimeoutError):  # the row shows how many were found
        await asyncio.wait_for(all_found.wait(), timeout=window_s + 30)
    for handle in timers.values():
        handle.cancel()
    return {"devices": count, "system": "timer-per-device", "heartbeats_per_s": count / elapsed,
            "delay_p50_ms": _percentile(delays, 50), "delay_p99_ms": _percentile(delays, 99),
            "cpu_us_per_heartbeat": cpu_s / count * 1e6, "bytes_per_device": memory / count,
            "absences": len(delays), "expected": len(silent)}


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


async def _redis_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _redis_cpu_s(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _percentile(values: list[float], percent: int) -> float | None:
    """None when nothing was found (the row's ``absences`` says so)."""
    return percentile(values, percent) if values else None


def print_devices_report(rows: list[SummaryRow]) -> None:
    print("absence detection: 1% of the devices go silent, deadlines spread over the window; "
          "median (min–max) of the runs")
    print(f"{'devices':>9} | {'system':>17} | {'heartbeats/s':>26} | {'delay p50 ms':>18} | "
          f"{'delay p99 ms':>18} | {'CPU µs/heartbeat':>18} | {'bytes/device':>20} | "
          f"{'absences':>16}")
    absence = [row for row in rows if "heartbeats_per_s" in row.spreads]
    for row in absence:
        print(f"{row.key['devices']:>9,} | {row.key['system']:>17} | "
              f"{row.cell('heartbeats_per_s'):>26} | {row.cell('delay_p50_ms'):>18} | "
              f"{row.cell('delay_p99_ms'):>18} | {row.cell('cpu_us_per_heartbeat', ',.1f'):>18} | "
              f"{row.cell('bytes_per_device'):>20} | {row.cell('absences'):>16}")
    ota = [row for row in rows if "devices_per_s" in row.spreads]
    if ota:
        print("\none OTA wave (canary of one device, no soak, then every other device)")
        print(f"{'devices':>9} | {'system':>22} | {'devices/s':>22}")
    for row in ota:
        print(f"{row.key['devices']:>9,} | {row.key['system']:>22} | "
              f"{row.cell('devices_per_s'):>22}")
