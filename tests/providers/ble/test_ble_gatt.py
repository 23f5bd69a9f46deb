"""ble-scanner's connect-and-read and notify of chosen characteristics, through
bleak's BlueZ client against the fake BlueZ: values published, a device that
refuses connections or answers too much never stops the scan or the others."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from framework.testing import BluezControl
from tests.providers.ble.conftest import (
    ENV_SENSING,
    OTHER,
    SENSOR,
    STREAM,
    TEMPERATURE,
    connector_for,
)


async def readings(redis: Redis, kind: str) -> list[dict[str, Any]]:
    found = [orjson.loads(fields["payload"])["value"] for _, fields in await redis.xrange(STREAM)]
    return [value for value in found if value["kind"] == kind]


async def windows_until(connector: Any, redis: Redis, kind: str, count: int,
                        limit: int = 40) -> list[dict[str, Any]]:
    for _ in range(limit):
        await connector.poll()
        found = await readings(redis, kind)
        if len(found) >= count:
            return found
    raise AssertionError(f"{count} {kind} readings expected, got {await readings(redis, kind)}")


async def test_a_read_characteristic_is_read_on_connect_and_at_each_interval(
    redis: Redis, fake: BluezControl,
) -> None:
    device = await fake.add_device("hci0", SENSOR)
    characteristic = await fake.add_characteristic(device, ENV_SENSING, TEMPERATURE,
                                                   value=b"\x34\x08")
    connector = await connector_for(redis, characteristics=[
        {"address": SENSOR, "uuid": "2a6e", "mode": "read", "intervalMs": 300}])
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR)  # seen: the link is made
        [first] = await windows_until(connector, redis, "read", 1)
        await fake.set_value(characteristic, b"\x35\x08")
        for _ in range(40):  # read again at the next interval, on the same connection
            await connector.poll()
            if (await readings(redis, "read"))[-1]["valueHex"] == "3508":
                break
        assert await fake.is_connected("hci0", SENSOR)
    finally:
        await connector.aclose()

    assert first == {"kind": "read", "address": SENSOR, "characteristic": TEMPERATURE,
                     "valueHex": "3408", "size": 2}
    assert (await readings(redis, "read"))[-1]["valueHex"] == "3508"
    assert not await fake.is_connected("hci0", SENSOR)  # closed with the connector


async def test_each_notification_is_published(redis: Redis, fake: BluezControl) -> None:
    device = await fake.add_device("hci0", SENSOR)
    characteristic = await fake.add_characteristic(device, ENV_SENSING, TEMPERATURE)
    connector = await connector_for(redis, characteristics=[
        {"address": SENSOR, "uuid": TEMPERATURE, "mode": "notify"}])
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR)
        for _ in range(20):  # until the link has subscribed
            await connector.poll()
            if await fake.is_notifying(characteristic):
                break
        for value in (b"\x01", b"\x01", b"\x02"):  # a repeated value is news too
            await fake.set_value(characteristic, value)
        found = await windows_until(connector, redis, "notify", 3)
    finally:
        await connector.aclose()

    assert [value["valueHex"] for value in found] == ["01", "01", "02"]


async def test_a_device_refusing_connections_stops_neither_the_scan_nor_other_devices(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", OTHER, connectable=False)
    device = await fake.add_device("hci0", SENSOR)
    await fake.add_characteristic(device, ENV_SENSING, TEMPERATURE, value=b"\x07")
    connector = await connector_for(redis, characteristics=[
        {"address": OTHER, "uuid": TEMPERATURE}, {"address": SENSOR, "uuid": TEMPERATURE}])
    try:
        await connector.poll()
        await fake.advertise("hci0", OTHER)
        await fake.advertise("hci0", SENSOR)
        [value] = await windows_until(connector, redis, "read", 1)
        await fake.advertise("hci0", OTHER, manufacturer_data={9: b"\x09"})
        await windows_until(connector, redis, "advertisement", 3)
    finally:
        await connector.aclose()

    assert value["address"] == SENSOR and value["valueHex"] == "07"


async def test_a_value_larger_than_att_allows_is_rejected_with_its_reason(
    redis: Redis, fake: BluezControl,
) -> None:
    device = await fake.add_device("hci0", SENSOR)
    await fake.add_characteristic(device, ENV_SENSING, TEMPERATURE, value=b"\xaa" * 600)
    connector = await connector_for(redis, characteristics=[
        {"address": SENSOR, "uuid": TEMPERATURE, "intervalMs": 100_000}])
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR)
        for _ in range(40):
            await connector.poll()
            if await redis.xlen("connector:state:radio:rejected"):
                break
        await fake.advertise("hci0", SENSOR, manufacturer_data={1: b"\x01"})
        await windows_until(connector, redis, "advertisement", 2)
    finally:
        await connector.aclose()

    [(_, rejected)] = await redis.xrange("connector:state:radio:rejected")
    assert "gave 600 bytes (ATT allows 512)" in str(rejected)
    assert await readings(redis, "read") == []
