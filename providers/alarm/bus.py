"""One MQTT session of one ``alarm_trigger`` call: connect, subscribe to the alarm's
acknowledgement topic, publish at QoS 1 and wait for each PUBACK, receive acks.

paho-mqtt runs its network loop in its own thread (``loop_start``); its callbacks
only hand results to the event loop (``call_soon_threadsafe``). Every wait has a
deadline (``ALARM_MQTT_TIMEOUT_MS``); a connection lost mid-escalation ends the
wait with a retryable error (the escalation resumes from its durable state). At
most 100 acknowledgements wait to be read, each at most 4 KiB: more is dropped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from framework.core import PermanentSourceError, TransientSourceError
from providers.alarm.params import CAPABILITY, AlarmSettings
from providers.broker_tls import verifying_context

MAX_ACK_BYTES = 4096
_ACK_QUEUE = 100


class ConnectionLost(TransientSourceError):
    """The broker connection dropped while the escalation waited."""


class AlarmBus:
    def __init__(self, settings: AlarmSettings, password: str | None) -> None:
        self._settings = settings
        self._password = password
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._connected: asyncio.Future[None] | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._done_mids: set[int] = set()
        self.acks: asyncio.Queue[bytes | Exception] = asyncio.Queue(_ACK_QUEUE)

    @property
    def where(self) -> str:
        return f"MQTT broker {self._settings.host}:{self._settings.port}"

    async def __aenter__(self) -> AlarmBus:
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"fleet-alarm-{uuid.uuid4().hex[:12]}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self._settings.username is not None:
            client.username_pw_set(self._settings.username, self._password)
        if self._settings.tls:
            client.tls_set_context(verifying_context(self._settings.ca_file))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_done
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        client.connect_async(str(self._settings.host), self._settings.port, keepalive=30)
        client.loop_start()
        try:
            await self._wait(self._connected, "connect")
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            # Joins paho's thread: off the event loop.
            await asyncio.to_thread(client.loop_stop)

    async def subscribe(self, topic: str) -> None:
        assert self._client is not None
        result, mid = self._client.subscribe(topic, qos=1)
        if mid is None:
            raise TransientSourceError(f"{CAPABILITY}: subscribe to {topic} on {self.where} "
                                       f"failed: {mqtt.error_string(result)}")
        await self._wait(self._future_for(mid), f"subscribe to {topic}")

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """At QoS 1: returns once the broker has it (PUBACK)."""
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransientSourceError(f"{CAPABILITY}: publish to {topic} on {self.where} "
                                       f"failed: {mqtt.error_string(info.rc)}")
        await self._wait(self._future_for(info.mid), f"publish to {topic}")

    async def next_ack(self, timeout_s: float) -> bytes | None:
        try:
            item = await asyncio.wait_for(self.acks.get(), max(timeout_s, 0))
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def _future_for(self, mid: int) -> asyncio.Future[None]:
        assert self._loop is not None
        future = self._loop.create_future()
        if mid in self._done_mids:  # paho may confirm before publish() returns
            self._done_mids.discard(mid)
            future.set_result(None)
        else:
            self._waiting[mid] = future
        return future

    async def _wait(self, future: asyncio.Future[None], what: str) -> None:
        try:
            await asyncio.wait_for(future, self._settings.timeout_s)
        except TimeoutError:
            raise TransientSourceError(f"{CAPABILITY}: {what} on {self.where}: no answer "
                                       f"within {self._settings.timeout_ms} ms") from None

    # -- paho's thread ------------------------------------------------------------------

    def _in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            error: Exception = (PermanentSourceError if reason.value in (4, 5, 134, 135)
                                else TransientSourceError)(
                f"{CAPABILITY}: {self.where} refused the connection: {reason}")
            self._in_loop(self._settle_connect, error)
            client.disconnect()
        else:
            self._in_loop(self._settle_connect, None)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._in_loop(self._settle_connect, TransientSourceError(
            f"{CAPABILITY}: cannot connect to {self.where}"))
        client.disconnect()  # no reconnect loop: the call's retry decides

    def _settle_connect(self, error: Exception | None) -> None:
        if self._connected is not None and not self._connected.done():
            if error is None:
                self._connected.set_result(None)
            else:
                self._connected.set_exception(error)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if self._client is not None and reason.is_failure:
            self._in_loop(self._push, ConnectionLost(
                f"{CAPABILITY}: lost the connection to {self.where}: {reason}"))

    def _on_done(self, client: Any, userdata: Any, mid: int, reason: Any = None,
                 properties: Any = None) -> None:
        self._in_loop(self._settle, mid)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        self._in_loop(self._settle, mid, PermanentSourceError(
            f"{CAPABILITY}: {self.where} refused the subscription to the acknowledgements: "
            f"{', '.join(refused)}") if refused else None)

    def _settle(self, mid: int, error: Exception | None = None) -> None:
        future = self._waiting.pop(mid, None)
        if future is None:
            if error is None:
                self._done_mids.add(mid)
        elif not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if len(message.payload) <= MAX_ACK_BYTES:
            self._in_loop(self._push, bytes(message.payload))

    def _push(self, item: bytes | Exception) -> None:
        if not self.acks.full():
            self.acks.put_nowait(item)
