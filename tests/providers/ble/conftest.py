"""A fake BlueZ on a private D-Bus per test (0.2 s), with adapter hci0, and the
``ble-scanner`` connector built on the test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.polling import ConnectorConfig
from framework.testing import BluezControl, BluezMock
from providers.ble import create_ble_connector
from tests.providers.push_rig import leased_context

STREAM = "raw-input-signals"
SENSOR = "AA:BB:CC:DD:EE:01"
OTHER = "AA:BB:CC:DD:EE:02"
ENV_SENSING = "0000181a-0000-1000-8000-00805f9b34fb"
TEMPERATURE = "00002a6e-0000-1000-8000-00805f9b34fb"


@pytest.fixture
def bluez(monkeypatch: pytest.MonkeyPatch) -> Iterator[BluezMock]:
    with BluezMock() as mock:
        # bleak reads it when it first connects to the system bus (per event loop).
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.address)
        yield mock


@pytest.fixture
async def fake(bluez: BluezMock) -> AsyncIterator[BluezControl]:
    async with bluez.control() as control:
        await control.add_adapter("hci0")
        yield control
    await close_bleak_manager()


async def close_bleak_manager() -> None:
    """bleak keeps one BlueZ connection per event loop for the loop's life; the test's
    loop ends here, so its connection is closed here (no socket left behind)."""
    from bleak.backends.bluezdbus import manager

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(instance, "_bus", None)
    if bus is not None:
        bus.disconnect()
        await asyncio.sleep(0)


def entry(**provider: Any) -> dict[str, Any]:
    return {"name": "radio", "type": "ble-scanner", "pollIntervalMs": 200,
            "requestTimeoutMs": 2000, "leaseTtlSeconds": 2,
            "providerConfig": {"interface": "hci0", "minIntervalMs": 0, **provider}}


async def connector_for(redis: Redis, **provider: Any) -> Any:
    config = ConnectorConfig.model_validate(entry(**provider))
    return create_ble_connector(config, await leased_context(redis, config))
