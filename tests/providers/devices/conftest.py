"""A private Mosquitto per test, a command channel and a simulator on it, and a raw
MQTT client to play a hostile device."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from framework.core import get_logger
from framework.testing import MosquittoServer
from providers.devices import (
    ChannelLimits,
    DeviceBroker,
    DeviceChannel,
    DeviceSimulator,
    SimulatorOptions,
)


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    with MosquittoServer(max_inflight=1000) as broker:
        yield broker


def broker_of(mosquitto: MosquittoServer, **extra: object) -> DeviceBroker:
    return DeviceBroker.model_validate({"broker": f"mqtt://127.0.0.1:{mosquitto.port}",
                                        "connect_timeout_s": 5, **extra})


@pytest.fixture
async def channel(mosquitto: MosquittoServer) -> AsyncIterator[DeviceChannel]:
    async with DeviceChannel(broker_of(mosquitto), logger=get_logger(test="devices"),
                             limits=ChannelLimits(max_in_flight=16)) as opened:
        yield opened


@pytest.fixture
async def simulator(mosquitto: MosquittoServer) -> AsyncIterator[DeviceSimulator]:
    async with DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=20, seed=1),
                               logger=get_logger(test="simulator")) as fleet:
        yield fleet


@pytest.fixture
def raw_client(mosquitto: MosquittoServer) -> Iterator[mqtt.Client]:
    """A plain paho client, connected, its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()
