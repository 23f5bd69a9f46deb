"""ble-scanner when BlueZ misbehaves: the adapter goes away and comes back, BlueZ
hangs, BlueZ is not there at all. Each failure is an error naming the adapter or
the call, within requestTimeoutMs, and the scan resumes by itself."""

from __future__ import annotations

import time

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import SourceError
from framework.testing import BluezControl, BluezMock
from tests.providers.ble.conftest import SENSOR, STREAM, connector_for


async def addresses(redis: Redis) -> list[str]:
    return [orjson.loads(fields["payload"])["value"]["address"]
            for _, fields in await redis.xrange(STREAM)]


async def test_a_missing_adapter_is_an_error_naming_it(redis: Redis, fake: BluezControl) -> None:
    connector = await connector_for(redis, interface="hci1")
    try:
        with pytest.raises(SourceError, match="Bluetooth adapter hci1 not found"):
            await connector.poll()
    finally:
        await connector.aclose()


async def test_the_scan_fails_when_the_adapter_goes_and_resumes_when_it_is_back(
    redis: Redis, fake: BluezControl,
) -> None:
    connector = await connector_for(redis, adapterCheckMs=100)
    try:
        await fake.add_device("hci0", SENSOR)
        await connector.poll()
        await fake.advertise("hci0", SENSOR, rssi=-40)
        await connector.poll()
        assert await addresses(redis) == [SENSOR]

        await fake.remove_adapter("hci0")  # unplugged: its devices go with it
        with pytest.raises(SourceError, match="Bluetooth adapter hci0 not found"):
            await connector.poll()
        with pytest.raises(SourceError, match="hci0 not found"):
            await connector.poll()  # the next window tries again, and says why

        await fake.add_adapter("hci0")
        await fake.add_device("hci0", SENSOR)
        await connector.poll()  # scanning on the adapter that came back
        await fake.advertise("hci0", SENSOR, rssi=-41)
        await connector.poll()
    finally:
        await connector.aclose()
    # Published again after the restart of the scan (the throttle starts empty).
    assert await addresses(redis) == [SENSOR, SENSOR]


@pytest.mark.slow  # two deadlines of 2 s
async def test_a_hung_bluez_fails_the_window_within_the_deadline(
    redis: Redis, bluez: BluezMock, fake: BluezControl,
) -> None:
    connector = await connector_for(redis, adapterCheckMs=100)
    try:
        await connector.poll()
        bluez.pause_bluez()
        started = time.monotonic()
        with pytest.raises(SourceError, match="within requestTimeoutMs"):
            await connector.poll()
        # The check gives up after requestTimeoutMs (2 s), stopping the scan after as
        # much again at most; then the window has failed.
        assert time.monotonic() - started < 2 * 2.0 + 1.0
    finally:
        bluez.resume_bluez()
        await connector.aclose()


async def test_no_bluez_on_the_bus_is_a_clear_error(
    redis: Redis, bluez: BluezMock, fake: BluezControl,
) -> None:
    bluez.stop_bluez(kill=True)
    connector = await connector_for(redis)
    try:
        with pytest.raises(SourceError, match=r"adapter hci0 not found \(BlueZ: "
                                              r"org\.freedesktop\.DBus\.Error\.ServiceUnknown"):
            await connector.poll()
    finally:
        await connector.aclose()


async def test_the_scan_resumes_after_bluetoothd_is_killed_and_started_again(
    redis: Redis, bluez: BluezMock, fake: BluezControl,
) -> None:
    connector = await connector_for(redis, adapterCheckMs=100)
    try:
        await fake.add_device("hci0", SENSOR)
        await connector.poll()
        bluez.stop_bluez(kill=True)  # a crash: its adapter and devices are gone
        with pytest.raises(SourceError, match="adapter hci0 not found"):
            await connector.poll()
        bluez.start_bluez()
        async with bluez.control() as restarted:
            await restarted.add_adapter("hci0")
            await restarted.add_device("hci0", SENSOR)
            for _ in range(20):
                try:
                    await connector.poll()
                except SourceError:
                    continue  # until bleak has seen the new BlueZ's objects
                await restarted.advertise("hci0", SENSOR, rssi=-44)
                if await redis.xlen(STREAM):
                    break
            await connector.poll()
    finally:
        await connector.aclose()
    assert await addresses(redis) == [SENSOR]


async def test_a_powered_off_adapter_is_an_error_saying_so_until_it_is_on_again(
    redis: Redis, fake: BluezControl,
) -> None:
    connector = await connector_for(redis, adapterCheckMs=100)
    try:
        await fake.add_device("hci0", SENSOR)
        await connector.poll()
        await fake.power("hci0", on=False)
        with pytest.raises(SourceError, match="Bluetooth adapter hci0 is powered off"):
            await connector.poll()
        await fake.power("hci0", on=True)
        await connector.poll()
        for _ in range(20):
            await fake.advertise("hci0", SENSOR, rssi=-45)
            await connector.poll()
            if await redis.xlen(STREAM):
                break
    finally:
        await connector.aclose()
    assert await addresses(redis) == [SENSOR]
