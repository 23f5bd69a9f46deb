"""modbus-tcp under kill -9: a real ``connector-run`` process polling a real pymodbus
slave is killed again and again, anywhere in its work. The slave moves to its next
value only once the current one is committed (its version saved), so every value
the slave ever held must be in the stream exactly once, in order."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from providers.modbus.register_simulator import RegisterSimulator
from tests.process import ConnectorProcess, write_config

STREAM = "raw-input-signals"
NAME = "plc-kill"
REGISTERS = 40


class DeviceThread:
    """A register simulator served from its own event loop in a thread, so that a
    blocking test can drive processes while the slave answers."""

    def __init__(self) -> None:
        self.device = RegisterSimulator()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> RegisterSimulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.device.start(), self._loop).result(10)
        return self.device

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.device.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def device() -> Iterator[RegisterSimulator]:
    with DeviceThread() as simulator:
        yield simulator


def entry(device: RegisterSimulator) -> dict[str, Any]:
    return {"name": NAME, "type": "modbus-tcp", "pollIntervalMs": 20,
            "requestTimeoutMs": 2000, "leaseTtlSeconds": 2,
            "providerConfig": {"slaves": [{
                "name": "line", "host": device.host, "port": device.port,
                "registers": [{"name": f"r{i}", "address": i * 2, "type": "uint32"}
                              for i in range(REGISTERS)]}]}}


def committed(client: sync_redis.Redis, step: int) -> bool:
    versions = client.hgetall(f"connector:state:{NAME}:versions")
    return len(versions) == REGISTERS and all(v == str(step) for v in versions.values())


def advance(device: RegisterSimulator, step: int) -> None:
    for i in range(REGISTERS):
        device.set_words("holding", i * 2, [step >> 16, step & 0xFFFF])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_again_and_again_loses_and_repeats_no_reading(
    device: RegisterSimulator, redis_server: RedisServer, tmp_path: Path,
) -> None:
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    config = write_config(tmp_path / "connectors.json", entry(device))
    chance = random.Random(17)
    step, rounds = 0, 10
    advance(device, step)
    for number in range(rounds + 1):
        process = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                   log=tmp_path / f"run-{number}.log")
        process.wait_for("lease_acquired", timeout_s=60)
        # The last round runs until the last value is committed, the others are
        # killed at a random moment: polling, committing, between polls.
        deadline = time.monotonic() + (30 if number == rounds else chance.uniform(0.2, 2.0))
        while time.monotonic() < deadline:
            if committed(client, step):
                if number == rounds:
                    break
                step += 1
                advance(device, step)
            time.sleep(chance.uniform(0.0, 0.03))
        process.signal(signal.SIGKILL)
        process.close()
        client.delete(f"lease:{NAME}")  # its TTL would free it; no need to wait

    published: dict[str, list[int]] = {}
    for _, fields in client.xrange(STREAM):
        event = orjson.loads(fields["payload"])
        published.setdefault(event["metadata"]["register"], []).append(event["value"])
    assert step > rounds, (f"only {step} values committed in {rounds} rounds", client.keys(),
                           client.hgetall(f"connector:state:{NAME}:versions"))
    assert committed(client, step)
    for register in (f"r{i}" for i in range(REGISTERS)):
        assert published[register] == list(range(step + 1)), register
    client.close()
