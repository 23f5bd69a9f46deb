"""``mqtt-source`` at QoS 2 on a real Mosquitto and a real Redis: PUBREC only after
the append, so a message whose append failed comes back; a message appended but
not yet PUBREC'd is not appended again when the broker repeats it; the saved
packet ids are released (PUBREL, PUBCOMP) and nothing stays with the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import SystemClock
from framework.core.errors import LeaseLostError
from framework.core.logs import get_logger
from framework.polling import (
    Batch,
    ConnectorConfig,
    Lease,
    PushConnector,
    PushParts,
    StateStore,
)
from framework.testing import MosquittoServer
from providers.mqtt import MqttEvents, MqttMessage, MqttSource, MqttSourceConfig
from providers.mqtt.qos2 import POSITION, Qos2Batch, parse_ids
from tests.providers.mqtt.conftest import publish_all
from tests.providers.push_rig import poll_for, poll_until, stream_values

STREAM = "raw-input-signals"
NAME = "sensors-qos2"


class CrashingAfterAppend(MqttSource):
    """Commits, then "crashes" before answering the broker: the first ``crashes``
    acknowledgements of batches with messages (before PUBREC), or with ``releases``
    of batches that only release ids (before PUBCOMP), are dropped and the session
    ends (a kill between the commit and the answer)."""

    def __init__(self, *args: Any, crashes: int, releases: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crashes = crashes
        self.releases = releases
        self.pubrels = 0  # PUBRELs received (counted in paho's thread)

    def _on_release(self, mid: int) -> None:
        self.pubrels += 1
        super()._on_release(mid)

    async def acknowledge(self, batch: Batch[MqttMessage]) -> None:
        releasing = isinstance(batch, Qos2Batch) and bool(batch.released)
        target = releasing and not batch.messages if self.releases else bool(batch.messages)
        if self.crashes and target:
            self.crashes -= 1
            raise ConnectionAbortedError("crashed between the commit and the answer")
        await super().acknowledge(batch)


async def qos2_connector(redis: Redis, peer: MosquittoServer, *, crashes: int = 0,
                         releases: bool = False, **provider: Any,
                         ) -> PushConnector[MqttMessage, dict[str, Any]]:
    settings = MqttSourceConfig.model_validate(
        {"broker": f"mqtt://127.0.0.1:{peer.port}", "topic": "plant/+/temp", "qos": 2,
         **provider})
    config = ConnectorConfig(name=NAME, type="mqtt-source", poll_interval_ms=300,
                             request_timeout_ms=5000,
                             provider_config=settings.model_dump(by_alias=True, mode="json"))
    await redis.delete(f"lease:{NAME}")
    lease = Lease(redis, NAME, ttl_s=30)
    assert await lease.try_acquire()
    logger = get_logger(connector=NAME)
    source = CrashingAfterAppend(settings, client_id=f"fleet-{NAME}", connect_timeout_s=5,
                                 logger=logger, crashes=crashes, releases=releases)
    events = MqttEvents(settings)
    parts = PushParts(source=source, item_id=events.item_id, transformer=events.event,
                      raw=lambda message: message.payload, dedupe_key=events.dedupe_key)
    return PushConnector(config=config, parts=parts, clock=SystemClock(), logger=logger,
                         store=StateStore(redis, config, lease, clock=SystemClock()))


async def saved_ids(redis: Redis) -> frozenset[int]:
    cursors = await redis.hget(f"connector:state:{NAME}", "cursors")
    return parse_ids(orjson.loads(cursors or "{}").get(POSITION, ""))


def reading(value: int) -> bytes:
    return orjson.dumps({"value": value})


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_qos_2_messages_arrive_once_and_their_ids_are_released(
    redis: Redis, mosquitto: MosquittoServer, protocol: str,
) -> None:
    connector = await qos2_connector(redis, mosquitto, protocol=protocol)
    await connector.poll()  # the session and its subscription exist
    await publish_all(mosquitto, [("plant/a/temp", reading(n)) for n in range(50)], qos=2)
    await poll_until(connector, redis, 50)
    await poll_for(connector, 1.0)  # PUBRELs come, their removal is committed
    await connector.aclose()
    assert await stream_values(redis) == list(range(50))
    assert await saved_ids(redis) == frozenset()  # every PUBREL was completed

    again = await qos2_connector(redis, mosquitto, protocol=protocol)
    await poll_for(again, 1.5)  # the broker holds nothing for the session
    await again.aclose()
    assert await redis.xlen(STREAM) == 50


async def test_a_qos_2_message_whose_append_failed_is_not_received_and_comes_back(
    redis: Redis, mosquitto: MosquittoServer,
) -> None:
    first = await qos2_connector(redis, mosquitto)
    await first.poll()
    await redis.set(f"lease:{NAME}", "another-instance", px=60_000)  # the append is refused
    await publish_all(mosquitto, [("plant/a/temp", reading(7))], qos=2)
    with pytest.raises(LeaseLostError):
        async with asyncio.timeout(10):
            while True:
                await first.poll()
    await first.aclose()
    assert await redis.xlen(STREAM) == 0

    second = await qos2_connector(redis, mosquitto)
    await poll_until(second, redis, 1)
    await poll_for(second, 1.0)
    await second.aclose()
    assert await stream_values(redis) == [7]


async def test_a_crash_between_the_append_and_pubrec_does_not_append_twice(
    redis: Redis, mosquitto: MosquittoServer,
) -> None:
    first = await qos2_connector(redis, mosquitto, crashes=1)
    await first.poll()
    await publish_all(mosquitto, [("plant/a/temp", reading(n)) for n in range(5)], qos=2)
    with pytest.raises(ConnectionAbortedError):
        async with asyncio.timeout(10):
            while True:
                await first.poll()
    await first.aclose()
    appended = await redis.xlen(STREAM)
    assert appended >= 1  # the batch is in the stream, the broker never heard PUBREC
    assert len(await saved_ids(redis)) == appended  # their ids were saved with them

    second = await qos2_connector(redis, mosquitto)
    await poll_until(second, redis, 5)
    await poll_for(second, 1.5)  # the broker repeats the un-PUBREC'd ones: answered only
    await second.aclose()
    assert await stream_values(redis) == list(range(5))
    assert await saved_ids(redis) == frozenset()


async def test_a_crash_between_saving_a_release_and_pubcomp_completes_it_next_time(
    redis: Redis,
) -> None:
    """The broker repeats PUBREL for ids no longer saved: answered with PUBCOMP at once,
    so a later session gets no PUBREL at all."""
    with MosquittoServer(max_inflight=5) as peer:
        await crash_on_release(redis, peer)


async def crash_on_release(redis: Redis, peer: MosquittoServer) -> None:
    first = await qos2_connector(redis, peer, crashes=1, releases=True)
    await first.poll()
    await publish_all(peer, [("plant/a/temp", reading(n)) for n in range(5)], qos=2)
    with pytest.raises(ConnectionAbortedError):
        async with asyncio.timeout(10):
            while True:
                await first.poll()
    await first.aclose()
    assert await redis.xlen(STREAM) == 5
    # A release was saved (those ids are gone), then no PUBCOMP was sent for it.
    assert len(await saved_ids(redis)) < 5

    second = await qos2_connector(redis, peer)
    await poll_for(second, 1.0)  # PUBRELs again: PUBCOMP at once
    await publish_all(peer, [("plant/a/temp", reading(n)) for n in range(5, 20)], qos=2)
    await poll_until(second, redis, 20)
    await poll_for(second, 1.0)
    await second.aclose()
    assert await stream_values(redis) == list(range(20))
    assert await saved_ids(redis) == frozenset()

    third = await qos2_connector(redis, peer)
    await poll_for(third, 1.0)
    await third.aclose()
    assert third_source(third).pubrels == 0  # the broker has nothing left to release


def third_source(connector: PushConnector[MqttMessage, Any]) -> CrashingAfterAppend:
    source = connector._parts.source  # the test's own source, to read its count
    assert isinstance(source, CrashingAfterAppend)
    return source


async def test_a_saved_packet_id_list_that_is_not_one_is_an_error_naming_it(
    redis: Redis, mosquitto: MosquittoServer,
) -> None:
    await redis.hset(f"connector:state:{NAME}", "cursors",
                     orjson.dumps({POSITION: "12,abc"}).decode())
    connector = await qos2_connector(redis, mosquitto)
    with pytest.raises(ValueError, match=r"positions mqtt.qos2: '12,abc' is not a list"):
        await connector.poll()
    await connector.aclose()
