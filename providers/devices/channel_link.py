"""One paho-mqtt 2 connection shared by every device request (or every simulated
device): connect, subscribe, publish, and hand what arrives to the event loop.

paho runs its network loop in its own thread and reconnects by itself; the topics
are subscribed again on each connection. The channel's session is clean (a request
outlives no connection of ours: its deadline ends it, and a request made while the
link is down waits for it within that deadline); the simulated devices keep theirs
(``session_expiry_s``), so a command waits at the broker while they reconnect.
Messages are handed to the loop in bursts (one wake-up per burst, not one per
message), and a message over
``max_message_bytes`` is dropped by the broker (MQTT 5 Maximum Packet Size) or
here, never parsed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from framework.core import Logger, TransientSourceError
from providers.devices.channel_broker import DeviceBroker

_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1, 10
Received = Callable[[list[tuple[str, bytes]]], None]


class DeviceLinkError(TransientSourceError):
    """The device broker cannot be reached, refused the login or a subscription."""


class MqttLink:
    """``await link.start()``; ``link.publish(topic, payload)``; ``await link.stop()``.
    ``on_messages`` runs on the event loop with each burst of (topic, payload)."""

    def __init__(self, broker: DeviceBroker, *, client_id: str, topics: Sequence[str],
                 on_messages: Received, logger: Logger, max_message_bytes: int,
                 session_expiry_s: int | None = None) -> None:
        self._broker = broker
        # None: a clean session (the channel: a request outlives no connection). A
        # device keeps its session, so that a command sent while it reconnects waits
        # for it at the broker (as real devices do).
        self._session_expiry_s = session_expiry_s
        self._client_id = client_id
        self._topics = list(topics)
        self._on_messages = on_messages
        self._log = logger
        self._max_bytes = max_message_bytes
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._arrived: deque[tuple[str, bytes]] = deque()
        self._wake_pending = False
        self.connected = False
        self._up = asyncio.Event()  # set while connected and subscribed
        self.oversized = 0

    async def start(self) -> None:
        """Connect and subscribe, within the broker's ``connect_timeout_s``."""
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._up.clear()
        client = self._new_client()
        host, port, _ = self._broker.address()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's constructor is untyped
        properties.MaximumPacketSize = self._max_bytes + 1024
        if self._session_expiry_s:
            properties.SessionExpiryInterval = self._session_expiry_s
        client.connect_async(host, port, keepalive=self._broker.keepalive_s,
                             clean_start=not self._session_expiry_s, properties=properties)
        self._client = client
        client.loop_start()
        timeout_s = self._broker.connect_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready
        except TimeoutError:
            await self.stop()
            raise DeviceLinkError(f"device broker {host}:{port}: not connected and "
                                  f"subscribed within {timeout_s:g} s") from None
        except BaseException:
            await self.stop()
            raise
        finally:
            self._ready = None

    async def wait_connected(self) -> None:
        """Until the link is up again (the caller bounds the wait: its deadline)."""
        if self._client is None:
            raise DeviceLinkError("device link is stopped")
        await self._up.wait()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue one message (paho sends it; QoS 1 ones again after a reconnect)."""
        client = self._client
        if client is None:
            raise DeviceLinkError("device link is stopped")
        client.publish(topic, payload, qos=qos)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)  # joins paho's thread (<= 1 select)
        self._arrived.clear()
        self.connected = False
        self._up.set()  # whoever waits for the link learns now that it is stopped

    # -- paho's thread ---------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv5)
        client.connect_timeout = self._broker.connect_timeout_s
        client.reconnect_delay_set(_RECONNECT_MIN_S, _RECONNECT_MAX_S)
        client.max_inflight_messages_set(1000)
        if self._broker.username:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.address()[2]:
            client.tls_set_context(self._tls_context())
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self._broker.tls
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls is not None and tls.ca_file else None)
        if tls is not None and tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        return context

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _properties: Properties | None) -> None:
        if reason.is_failure:
            self._call(self._fail, f"device broker refused the connection: {reason}")
            return
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        host, port, _ = self._broker.address()
        self._call(self._fail, f"device broker {host}:{port}: cannot connect")

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _properties: Properties | None) -> None:
        refused = [topic for topic, reason in zip(self._topics, reasons, strict=False)
                   if reason.is_failure]
        if refused:
            self._call(self._fail, f"device broker refused the subscription to {refused}")
        else:
            self._call(self._subscribed)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _properties: Properties | None) -> None:
        self._call(self._disconnected, str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if len(message.payload) > self._max_bytes:
            self.oversized += 1
            return
        self._arrived.append((message.topic, bytes(message.payload)))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._deliver)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)

    # -- the event loop ---------------------------------------------------------------

    def _deliver(self) -> None:
        self._wake_pending = False
        burst: list[tuple[str, bytes]] = []
        while self._arrived:
            burst.append(self._arrived.popleft())
        if burst:
            self._on_messages(burst)

    def _subscribed(self) -> None:
        self.connected = True
        self._up.set()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        else:
            self._log.info("device_link_reconnected", client_id=self._client_id)

    def _fail(self, error: str) -> None:
        self._log.error("device_link_failed", error=error)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(DeviceLinkError(error))

    def _disconnected(self, reason: str) -> None:
        self.connected = False
        self._up.clear()
        if self._client is not None:
            self._log.warning("device_link_disconnected", reason=reason)
