"""A private Mosquitto per test (it starts in ~50 ms), and helpers to publish to it
and to build ``mqtt-source`` connectors on the test Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt import publish

from framework.testing import MosquittoServer


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    with MosquittoServer() as broker:
        yield broker


async def publish_all(broker: MosquittoServer, messages: list[tuple[str, bytes]], *,
                      qos: int = 1, port: int | None = None, **kwargs: Any) -> None:
    """Publish ``(topic, payload)`` pairs at ``qos`` and wait until the broker has them."""
    batch: list[Any] = [(topic, payload, qos, False)
                                         for topic, payload in messages]
    await asyncio.to_thread(publish.multiple, batch, hostname="127.0.0.1",
                            port=port or broker.port, **kwargs)
