"""ble-scanner run by ``connector-run`` on the fake BlueZ, killed with SIGKILL while
it scans and reads: the next process publishes each device once more (the stated
guarantee: advertisements have no position to resume from) and goes on deduplicating;
characteristic reads resume; no entry is half-written."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.testing import BluezControl, BluezMock, RedisServer
from tests.process import ConnectorProcess, write_config
from tests.providers.ble.conftest import ENV_SENSING, SENSOR, STREAM, TEMPERATURE, entry

pytestmark = pytest.mark.slow  # two connector-run processes


async def events(redis: Redis) -> list[dict[str, Any]]:
    return [orjson.loads(fields["payload"])["value"] for _, fields in await redis.xrange(STREAM)]


async def advertise_until(fake: BluezControl, redis: Redis, count: int, data: bytes,
                          timeout_s: float = 30.0) -> None:
    """Advertise ``data`` every 50 ms until ``count`` advertisements are in the stream."""
    async with asyncio.timeout(timeout_s):
        while len([e for e in await events(redis) if e["kind"] == "advertisement"]) < count:
            await fake.advertise("hci0", SENSOR, manufacturer_data={1: data})
            await asyncio.sleep(0.05)


async def reads_until(redis: Redis, count: int, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if len([e for e in await events(redis) if e["kind"] == "read"]) >= count:
                return
            await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_kill_9_then_each_device_is_published_once_more_and_reads_resume(
    redis: Redis, redis_server: RedisServer, bluez: BluezMock, fake: BluezControl,
    tmp_path: Path,
) -> None:
    device = await fake.add_device("hci0", SENSOR)
    await fake.add_characteristic(device, ENV_SENSING, TEMPERATURE, value=b"\x2a")
    config = write_config(tmp_path / "connectors.json", entry(
        characteristics=[{"address": SENSOR, "uuid": TEMPERATURE, "intervalMs": 100_000}]))

    first = ConnectorProcess("radio", redis_url=redis_server.url, config=config,
                             log=tmp_path / "first.log", env=bluez.env)
    try:
        await asyncio.to_thread(first.wait_for, "ble_scan_started", timeout_s=60)
        await advertise_until(fake, redis, 1, b"\x01")
        await reads_until(redis, 1)
        for _ in range(6):  # the device repeats itself: still one advertisement
            await fake.advertise("hci0", SENSOR, manufacturer_data={1: b"\x01"})
            await asyncio.sleep(0.05)
        first.signal(signal.SIGKILL)
        first.wait()
    finally:
        first.close()
    await redis.delete("lease:radio")  # its TTL would free it; no need to wait

    second = ConnectorProcess("radio", redis_url=redis_server.url, config=config,
                              log=tmp_path / "second.log", env=bluez.env)
    try:
        await asyncio.to_thread(second.wait_for, "ble_scan_started", timeout_s=60)
        await advertise_until(fake, redis, 2, b"\x01")  # published once more
        for _ in range(10):  # and then deduplicated again
            await fake.advertise("hci0", SENSOR, manufacturer_data={1: b"\x01"})
            await asyncio.sleep(0.05)
        await advertise_until(fake, redis, 3, b"\x02")  # new data: news
        await reads_until(redis, 2)
        second.signal(signal.SIGTERM)
        assert second.wait() == 0
    finally:
        second.close()

    published = await events(redis)
    adverts = [e["manufacturerData"] for e in published if e["kind"] == "advertisement"]
    assert adverts == [{"1": "01"}, {"1": "01"}, {"1": "02"}]
    reads = [e["valueHex"] for e in published if e["kind"] == "read"]
    assert reads == ["2a", "2a"]  # one per process: read on connect
    item_ids = [fields["item_id"] for _, fields in await redis.xrange(STREAM)]
    assert len(set(item_ids)) == len(item_ids)
