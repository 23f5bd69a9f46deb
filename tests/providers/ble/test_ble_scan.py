"""ble-scanner against bleak's real BlueZ backend talking to a fake BlueZ on a
private D-Bus: advertisements published with their data, deduplicated and rate
limited per device, filtered by service and address."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from framework.testing import BluezControl
from tests.providers.ble.conftest import ENV_SENSING, OTHER, SENSOR, STREAM, connector_for


async def values(redis: Redis) -> list[dict[str, Any]]:
    return [orjson.loads(fields["payload"])["value"] for _, fields in await redis.xrange(STREAM)]


async def windows_until(connector: Any, redis: Redis, count: int, limit: int = 25) -> None:
    """Windows until ``count`` entries are in the stream (a busy machine may deliver an
    advertisement's D-Bus signal after the window it was sent in), then one more."""
    for _ in range(limit):
        if await redis.xlen(STREAM) >= count:
            break
        await connector.poll()
    await connector.poll()


async def test_an_advertisement_is_published_with_address_rssi_and_data_in_hex(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", SENSOR, name="thermo")
    connector = await connector_for(redis)
    try:
        await connector.poll()  # scanning
        await fake.advertise("hci0", SENSOR, rssi=-47, manufacturer_data={0x004C: b"\x02\x15"},
                             service_data={ENV_SENSING: b"\x10\x20"},
                             service_uuids=[ENV_SENSING])
        await windows_until(connector, redis, 1)
    finally:
        await connector.aclose()

    [entry] = [fields for _, fields in await redis.xrange(STREAM)]
    event = orjson.loads(entry["payload"])
    assert event["source"] == "ble" and event["nodeId"] == SENSOR
    assert event["metadata"] == {"interface": "hci0"}
    assert event["value"] == {
        "kind": "advertisement", "address": SENSOR, "name": "thermo", "rssi": -47,
        "txPower": 0, "manufacturerData": {"76": "0215"},
        "serviceData": {ENV_SENSING: "1020"}, "serviceUuids": [ENV_SENSING]}
    assert entry["item_id"].startswith(f"{SENSOR}/adv/")


async def test_a_device_repeating_itself_is_published_again_only_when_its_data_changes(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", SENSOR)
    connector = await connector_for(redis)
    try:
        await connector.poll()
        for rssi in (-50, -51, -52, -53):  # the same data, the RSSI drifting
            await fake.advertise("hci0", SENSOR, rssi=rssi, manufacturer_data={1: b"\x01"})
            await connector.poll()
        await fake.advertise("hci0", SENSOR, rssi=-54, manufacturer_data={1: b"\x02"})
        await windows_until(connector, redis, 2)
    finally:
        await connector.aclose()

    assert [v["manufacturerData"] for v in await values(redis)] == [{"1": "01"}, {"1": "02"}]


async def test_an_rssi_step_makes_a_moving_device_news(redis: Redis, fake: BluezControl) -> None:
    await fake.add_device("hci0", SENSOR)
    connector = await connector_for(redis, rssiStepDbm=10)
    try:
        await connector.poll()
        # Steps -60..-51, -70..-61, -80..-71: the count published after each.
        for rssi, published in ((-51, 1), (-55, 1), (-59, 1), (-61, 2), (-75, 3)):
            await fake.advertise("hci0", SENSOR, rssi=rssi)
            await windows_until(connector, redis, published)
    finally:
        await connector.aclose()

    assert [v["rssi"] for v in await values(redis)] == [-51, -61, -75]


async def test_a_chatty_device_is_published_at_most_once_per_interval_newest_first(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", SENSOR)
    await fake.add_device("hci0", OTHER)
    connector = await connector_for(redis, minIntervalMs=60_000)
    try:
        await connector.poll()
        for count in range(5):  # new data each time: only the rate limit holds it back
            await fake.advertise("hci0", SENSOR, manufacturer_data={1: bytes([count])})
            await connector.poll()
        await fake.advertise("hci0", OTHER, manufacturer_data={1: b"\xff"})
        await windows_until(connector, redis, 2)
    finally:
        await connector.aclose()

    published = await values(redis)
    # The sensor once, then nothing within the minute though its data changed; the
    # other device is not held back by it.
    assert [v["address"] for v in published] == [SENSOR, OTHER]
    assert published[1]["manufacturerData"] == {"1": "ff"}


async def test_only_devices_advertising_a_wanted_service_or_address_are_published(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", SENSOR)
    await fake.add_device("hci0", OTHER)
    connector = await connector_for(redis, serviceUUIDs=["181A"])
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR, service_uuids=[ENV_SENSING])
        await fake.advertise("hci0", OTHER, service_uuids=["0000180f-0000-1000-8000-00805f9b34fb"])
        await windows_until(connector, redis, 1)
    finally:
        await connector.aclose()
    assert [v["address"] for v in await values(redis)] == [SENSOR]

    await redis.delete(STREAM)
    connector = await connector_for(redis, addresses=[OTHER.lower()])
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR, rssi=-40)
        await fake.advertise("hci0", OTHER, rssi=-41)
        await windows_until(connector, redis, 1)
    finally:
        await connector.aclose()
    assert [v["address"] for v in await values(redis)] == [OTHER]


async def test_passive_scanning_starts_with_its_patterns(redis: Redis, fake: BluezControl) -> None:
    connector = await connector_for(redis, scanMode="passive", passivePatterns=[
        {"start": 0, "adType": 0xFF, "dataHex": "4C00"}])
    try:
        summary = await connector.poll()  # BlueZ took the advertisement monitor
    finally:
        await connector.aclose()
    assert summary.failed == 0


async def test_an_advertisement_larger_than_ble_allows_is_rejected_and_the_others_go_on(
    redis: Redis, fake: BluezControl,
) -> None:
    await fake.add_device("hci0", SENSOR)
    await fake.add_device("hci0", OTHER)
    connector = await connector_for(redis)
    try:
        await connector.poll()
        await fake.advertise("hci0", SENSOR, manufacturer_data={1: b"\x00" * 2000})
        await fake.advertise("hci0", OTHER, manufacturer_data={1: b"\x01"})
        for _ in range(25):
            await connector.poll()
            if await redis.xlen("connector:state:radio:rejected") and await redis.xlen(STREAM):
                break
    finally:
        await connector.aclose()

    assert [v["address"] for v in await values(redis)] == [OTHER]
    [(_, rejected)] = await redis.xrange("connector:state:radio:rejected")
    # 2,000 bytes of manufacturer data and the 6 of the name "sensor".
    assert rejected["error"] == (f"ValueError: advertisement of {SENSOR} carries 2006 bytes "
                                 "(more than 1024)")
