"""The baseline of ``bench consume``'s ``pump_control`` row: the least work the same
job needs, one Modbus TCP session per event (connect, write the speed register,
close), as many at a time as the consumer's ``max_in_flight``, against the same
pymodbus slave process; no Redis, no rules, no capability. Three runs, each with a
fresh slave, reported as median (min–max) with the load average.

``python -m worker.bench.pump_baseline [EVENTS] [CONCURRENCY]``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

from pymodbus.client import AsyncModbusTcpClient

from framework.testing import free_port

RUNS = 3


async def _session(port: int) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0,
                                  reconnect_delay=0)
    try:
        if not await client.connect():
            raise RuntimeError(f"pump baseline: cannot connect to 127.0.0.1:{port}")
        response = await client.write_registers(10, [500], device_id=1)
        if response.isError():
            raise RuntimeError(f"pump baseline: write refused: {response}")
    finally:
        client.close()


async def _sessions_per_s(port: int, events: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await _session(port)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(events)))
    return events / (time.perf_counter() - started)


def main(events: int, concurrency: int) -> int:
    rates, loads = [], []
    for _ in range(RUNS):
        port = free_port()
        peer = subprocess.Popen([sys.executable, "-m", "worker.bench.action_peers", "modbus",
                                 str(port)], stdout=subprocess.PIPE)
        try:
            assert peer.stdout is not None
            if peer.stdout.readline().strip() != b"ready":
                raise RuntimeError("pump baseline: the Modbus slave did not start")
            loads.append(os.getloadavg()[0])
            rates.append(asyncio.run(_sessions_per_s(port, events, concurrency)))
        finally:
            peer.terminate()
            peer.wait(10)
    print(f"pump baseline: {events:,} Modbus sessions, {concurrency} at a time: "
          f"{statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) sessions/s; "
          f"load average (1 min) at each start: {', '.join(f'{x:.2f}' for x in loads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000,
                  int(sys.argv[2]) if len(sys.argv) > 2 else 64))
