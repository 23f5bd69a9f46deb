"""``bench sources --source mqtt``: events/s from a private Mosquitto into the
stream, through ``mqtt-source`` (lease, fenced append, ack after it) against a
bare paho loop doing the same work without the framework (MQTT 5, the same
persistent session and in-flight window, manual ack; take what arrived, one
pipelined XADD per batch, then PUBACK).

Both drain the same backlog: ``events`` QoS 1 messages queued in a persistent
session while the reader is away, timed from the reader's start to the last
message in the stream. Mode ``drain-qos2`` does the same at QoS 2: the connector
sends PUBREC after the append and saves the packet ids with it
(:mod:`providers.mqtt.qos2`); the bare loop lets paho answer PUBREC on receipt and
sends PUBCOMP after its XADD (the least a QoS 2 reader does, crash-safe or not).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from framework.testing import MosquittoServer
from providers.mqtt import create_mqtt_connector
from worker.bench.sources import drain_rows
from worker.bench.stats import Row

TOPIC = "bench/sensor/temp"
STREAM = "raw-input-signals"
# Both readers may have this many QoS 1 messages unacknowledged.
IN_FLIGHT = 1000


def measure(params: Row) -> list[Row]:
    """One run: ``rate`` (the connector) and ``bare_rate`` (events/s) draining ``events``
    messages into the stream of the Redis at ``redis_url`` (emptied before each)."""
    rows = drain_rows(params, functools.partial(_measure, qos=1))
    rows += [{**row, "mode": "drain-qos2"}
             for row in drain_rows(params, functools.partial(_measure, qos=2))]
    return rows


async def _measure(events: int, redis_url: str, *, qos: int) -> Row:
    with MosquittoServer(max_inflight=IN_FLIGHT) as broker:
        redis = create_redis(redis_url)
        try:
            await redis.delete(STREAM)
            connector_rate = await _drain_connector(redis, broker, events, qos)
            await redis.delete(STREAM)
            bare_rate = await _drain_bare(redis, broker, events, qos)
        finally:
            await redis.aclose()
    return {"rate": connector_rate, "bare_rate": bare_rate}


def _publish_backlog(port: int, messages: int, qos: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(IN_FLIGHT)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(TOPIC, orjson.dumps({"value": n, "unit": "C"}), qos=qos)
             for n in range(messages)]
    for info in infos:
        info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()


async def _drain_connector(redis: Redis, broker: MosquittoServer, messages: int,
                           qos: int) -> float:
    config = ConnectorConfig(
        name="bench-mqtt", type="mqtt-source", poll_interval_ms=1000,
        provider_config={"broker": f"mqtt://127.0.0.1:{broker.port}", "topic": TOPIC,
                         "maxInflight": IN_FLIGHT, "protocol": "5", "qos": qos})

    async def connector() -> Any:
        await redis.delete(*_keys_of(config.name))
        lease = Lease(redis, config.name, ttl_s=60)
        await lease.try_acquire()
        context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                                   clock=SystemClock(), logger=get_logger(connector=config.name))
        return create_mqtt_connector(config, context)

    first = await connector()
    await first.poll()  # the persistent session exists: the backlog waits in it
    await first.aclose()
    await asyncio.to_thread(_publish_backlog, broker.port, messages, qos)
    reader = await connector()
    started = time.perf_counter()
    while await redis.xlen(STREAM) < messages:
        await reader.poll()
    elapsed = time.perf_counter() - started
    await reader.aclose()
    return messages / elapsed


def _keys_of(name: str) -> list[str]:
    """What an earlier run on the same Redis left: its lease and state."""
    return [f"lease:{name}", f"connector:state:{name}", f"connector:state:{name}:seen",
            f"connector:state:{name}:rejected"]


class _BareReader:
    """paho with manual ack; arrivals handed to the event loop as they come."""

    def __init__(self, port: int, qos: int) -> None:
        self.port = port
        self.qos = qos
        self.arrived: deque[mqtt.MQTTMessage] = deque()
        self.ready = threading.Event()
        self.client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        # The same protocol and session as the connector's (MQTT 5, persistent).
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare",
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.on_connect = lambda c, *_: c.subscribe(TOPIC, qos=self.qos)
        client.on_subscribe = lambda *_: self.ready.set()
        client.on_message = lambda _c, _u, message: self.arrived.append(message)
        return client

    def start(self) -> None:
        """A new client each time: paho's loop_start opens a new wake-up socket pair
        without closing the previous one."""
        self.ready.clear()
        self.client = self._new_client()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: untyped
        properties.SessionExpiryInterval = 3600
        properties.ReceiveMaximum = IN_FLIGHT
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=properties)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("bare paho reader: not subscribed within 10 s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def _drain_bare(redis: Redis, broker: MosquittoServer, messages: int,
                      qos: int) -> float:
    reader = _BareReader(broker.port, qos)
    reader.start()
    reader.stop()
    await asyncio.to_thread(_publish_backlog, broker.port, messages, qos)
    started = time.perf_counter()
    reader.start()
    appended = 0
    while appended < messages:
        batch = [reader.arrived.popleft() for _ in range(len(reader.arrived))]
        if not batch:
            await asyncio.sleep(0.001)
            continue
        async with redis.pipeline(transaction=False) as pipe:
            for message in batch:
                pipe.xadd(STREAM, {"payload": message.payload})
            await pipe.execute()
        for message in batch:
            reader.client.ack(message.mid, message.qos)
        appended += len(batch)
    elapsed = time.perf_counter() - started
    reader.stop()
    return messages / elapsed
