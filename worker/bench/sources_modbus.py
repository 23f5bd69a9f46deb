"""``connector-fleet bench sources --sources modbus``: registers/s through the
``modbus-tcp`` connector against a bare loop doing the same work without it.

One run: a private Redis and a pymodbus slave in a process of its own. The
connector reads ``registers`` holding registers of that slave (contiguous, so in
requests of 125) in ``publish: every-poll`` mode, so that each poll publishes
every reading (fetch, decode, diff, transform, XADD and the versions in one
fenced commit), for ``polls`` polls back to back. A second row polls in
``change`` mode with nothing changing (reads and diff only). The baseline is a
plain pymodbus client doing the same reads and, per poll, one pipeline of one
XADD per register to publish (every register, or those that differ from the
previous poll's), with no state and no fencing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import RedisServer, free_port
from providers.modbus import create_modbus_connector
from worker.bench.stats import Row

_READ = 125  # registers per request, as the connector groups them


def measure(params: Row) -> list[Row]:
    registers, polls = int(params["registers"]), int(params["polls"])
    port = free_port()
    slave = subprocess.Popen(
        [sys.executable, "-m", "providers.modbus.register_simulator", str(port),
         str(registers)], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert slave.stdout is not None and slave.stdout.readline().strip() == "ready"
        with RedisServer() as server:
            return asyncio.run(_rows(server.url, port, registers, polls))
    finally:
        slave.terminate()
        slave.wait(30)


async def _rows(url: str, port: int, registers: int, polls: int) -> list[Row]:
    redis = create_redis(url)
    try:
        rows = []
        for mode in ("every-poll", "change"):
            connector_rate = await _connector_rate(redis, port, registers, polls, mode)
            bare_rate = await _bare_rate(redis, port, registers, polls,
                                         publish=mode == "every-poll")
            rows.append({"mode": mode, "registers": registers,
                         "rate": connector_rate, "bare_rate": bare_rate})
        return rows
    finally:
        await redis.aclose()


async def _connector_rate(redis: Redis, port: int, registers: int, polls: int,
                          mode: str) -> float:
    await redis.flushdb()
    config = ConnectorConfig.model_validate({
        "name": "bench-modbus", "type": "modbus-tcp", "streamMaxLen": 10 * registers * polls,
        "providerConfig": {"host": "127.0.0.1", "port": port, "publish": mode,
                           "registers": [{"name": f"r{i}", "address": i, "type": "uint16"}
                                         for i in range(registers)]}})
    lease = Lease(redis, config.name, ttl_s=300)
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector=config.name))
    connector: Any = create_modbus_connector(config, context)
    try:
        await connector.poll()  # connected, versions saved: the steady state is measured
        started = time.perf_counter()
        for _ in range(polls):
            summary = await connector.poll()
            assert summary.failed == 0
            # every-poll: a new millisecond makes every reading a new version.
            await asyncio.sleep(0.001)
        return registers * polls / (time.perf_counter() - started)
    finally:
        await connector.aclose()


async def _bare_rate(redis: Redis, port: int, registers: int, polls: int, *,
                     publish: bool) -> float:
    from pymodbus.client import AsyncModbusTcpClient

    await redis.flushdb()
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    try:
        previous: list[int] = []
        started = time.perf_counter()
        for _ in range(polls):
            values: list[int] = []
            for address in range(0, registers, _READ):
                response = await client.read_holding_registers(
                    address, count=min(_READ, registers - address), device_id=1)
                values += response.registers
            # Publish every reading, or (like the connector's "change" mode) those
            # that differ from the previous poll's.
            changed = range(len(values)) if publish else [
                i for i, value in enumerate(values) if i >= len(previous) or previous[i] != value]
            previous = values
            if changed:
                async with redis.pipeline(transaction=False) as pipe:
                    for index in changed:
                        value = values[index]
                        pipe.xadd("bare-modbus", {"payload": orjson.dumps(
                            {"register": f"r{index}", "value": value})})
                    await pipe.execute()
            await asyncio.sleep(0.001)
        return registers * polls / (time.perf_counter() - started)
    finally:
        client.close()
