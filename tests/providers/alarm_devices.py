"""Alarm devices for the ``alarm_trigger`` tests: one paho-mqtt client on the test
Mosquitto, subscribed to every device's alarm topic, that records what each device
received and acknowledges (retained, QoS 1, as the capability documents) for the
devices told to."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from framework.testing import MosquittoServer


class AlarmDevices:
    def __init__(self, broker: MosquittoServer, *, prefix: str = "alarms") -> None:
        self.broker = broker
        self.prefix = prefix
        self.received: list[tuple[str, dict[str, Any]]] = []
        # device -> the name it acknowledges as; devices not here stay silent.
        self.acking: dict[str, str] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-devices",
                                   protocol=mqtt.MQTTv311)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()

    def __enter__(self) -> AlarmDevices:
        self._client.connect("127.0.0.1", self.broker.port)
        self._client.subscribe(f"{self.prefix}/devices/+/alarm", qos=1)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("the test devices could not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def got(self, device: str, operation: str = "raise") -> list[dict[str, Any]]:
        with self._lock:
            return [m for d, m in self.received if d == device and m["operation"] == operation]

    async def wait_for(self, device: str, count: int = 1, timeout_s: float = 5.0) -> None:
        until = time.monotonic() + timeout_s
        while len(self.got(device)) < count:
            if time.monotonic() > until:
                raise AssertionError(f"{device} received {self.got(device)}")
            await asyncio.sleep(0.01)

    def acknowledge(self, alarm: dict[str, Any], device: str, by: str | None = None,
                    **extra: Any) -> None:
        body = {"alarmId": alarm["alarmId"], "device": device, "by": by, **extra}
        self.send_raw(alarm["ackTopic"], orjson.dumps(body))

    def send_raw(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        device = message.topic.split("/")[-2]
        alarm = orjson.loads(message.payload)
        with self._lock:
            self.received.append((device, alarm))
        if alarm["operation"] == "raise" and device in self.acking:
            body = {"alarmId": alarm["alarmId"], "device": device, "by": self.acking[device]}
            client.publish(alarm["ackTopic"], orjson.dumps(body), qos=1, retain=True)
