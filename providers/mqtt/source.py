"""The MQTT push source: a paho-mqtt 2 client in a persistent session whose QoS 1
messages are acknowledged (PUBACK) only after their batch is in the stream.

paho runs its network loop in its own thread (``loop_start``): it keeps the
connection alive and reconnects after a broker restart by itself. Its callbacks
append what arrived to an inbox (a deque: thread-safe for append) and wake the
event loop once per burst, not once per message; the connector's task reads
batches from there. Each message carries the number of the connection that
delivered it, counted in paho's thread. ``manual_ack`` keeps paho from
acknowledging on receipt: :meth:`MqttSource.acknowledge` does it after the
commit. A message received on a connection that has since dropped is not
acknowledged: the broker sends it again on the next connection of the session
(MQTT 3.1.1 4.4, MQTT 5 4.4), and what was waiting in the local queue is dropped
for the same reason.

The session is persistent (3.1.1: clean session off; 5: clean start off and a
session expiry interval), so the broker queues QoS 1 messages while the
connector is down or a standby, and delivers them to the next holder of the
lease (same client id). QoS 2 is received exactly once (:mod:`providers.mqtt.qos2`):
PUBREC waits for the append, and the packet ids between PUBREC and PUBREL are saved
with the batch.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from framework.core import Logger, TransientSourceError
from framework.polling import Batch
from providers.broker_tls import client_tls_context
from providers.inbox import Inbox
from providers.mqtt.config import MqttSourceConfig
from providers.mqtt.qos2 import Qos2Batch, Qos2Client, Qos2Receipts, Release
from providers.reconnect import ReconnectBackoff

# QoS 0 messages waiting beyond this many are dropped (QoS 0 promises at most once);
# QoS 1 messages are bounded by the broker's in-flight window and never dropped.
QOS0_QUEUE_LIMIT = 10_000
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 1, 10
# How long a receive waits for more after the first message of a batch.
LINGER_S = 0.005


class MqttConnectError(TransientSourceError):
    """The broker could not be reached, refused the login, or refused a subscription."""


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One PUBLISH as received. ``local_id``: unique per delivery (MQTT gives no id
    that survives a session); ``connection``: which connection delivered it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    connection: int
    local_id: str
    user_properties: tuple[tuple[str, str], ...] = ()


class MqttSource:
    """A :class:`framework.polling.PushSource` over one MQTT session."""

    def __init__(self, settings: MqttSourceConfig, *, client_id: str, connect_timeout_s: float,
                 logger: Logger) -> None:
        self._settings = settings
        self._client_id = client_id
        self._timeout_s = connect_timeout_s
        self._log = logger
        self._client: Qos2Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: Inbox[MqttMessage] = Inbox(LINGER_S)
        # PUBRELs, appended in paho's thread (a deque's append is thread-safe).
        self._releases: collections.deque[Release] = collections.deque()
        self._receipts = Qos2Receipts()
        self._ready: asyncio.Future[None] | None = None
        # Counted in paho's thread (on_connect, on_disconnect); read in the loop's.
        self._connection = 0
        self._wake_pending = False
        self._subscribed_once = False
        self.dropped_qos0 = 0
        self._backoff = ReconnectBackoff()
        # Local ids: one random prefix per source, then a counter (cheap per message).
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count()

    async def start(self, positions: Mapping[str, str]) -> None:
        """Connect, subscribe, and wait (at most the connect timeout) for both; after
        failures in a row, pause first (:class:`ReconnectBackoff`)."""
        self._receipts.resume(positions)
        await self._backoff.pause()
        try:
            await self._connect()
        except BaseException:
            self._backoff.failed()
            raise
        self._backoff.succeeded()

    async def _connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._subscribed_once = False
        client = self._new_client()
        host, port, _ = self._settings.address()
        client.connect_async(host, port, keepalive=self._settings.keepalive_s,
                             clean_start=False, properties=self._connect_properties())
        self._client = client  # before paho's thread delivers anything
        client.loop_start()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._ready
        except TimeoutError:
            await self.stop()
            raise MqttConnectError(f"mqtt broker {host}:{port}: not connected and subscribed "
                                   f"within {self._timeout_s:g} s") from None
        except BaseException:
            await self.stop()
            raise
        finally:
            self._ready = None  # a later failure is logged, not kept for nobody

    async def receive(self, max_messages: int, wait_s: float) -> Batch[MqttMessage]:
        # paho parses in its own thread: the inbox lets a burst gather instead of
        # appending its messages one commit each (which also starves that thread of
        # the GIL). One of an earlier connection comes again on this one: not twice
        # (the connection is the one current when the message is taken).
        # A PUBREL alone wakes no take that waits for messages: do not wait then.
        messages = await self._inbox.take(
            max_messages, 0.0 if self._releases else wait_s,
            keep=lambda message: message.connection == self._connection)
        client = self._client
        releases = [self._releases.popleft() for _ in range(len(self._releases))]
        if client is None:
            return Batch(messages)
        if self._settings.qos < 2:
            # A QoS 1 subscription gets no QoS 2 message; were a broker to send one
            # anyway, it is acknowledged after its append and released at once.
            for release in releases:
                client.send_pubcomp(release.mid)
            return Batch(messages)
        return self._receipts.batch(messages, releases, client, self._connection)

    async def acknowledge(self, batch: Batch[MqttMessage]) -> None:
        client = self._client
        if client is None:
            return
        for message in batch.messages:
            # On a later connection the broker has sent it again: that copy is acked.
            if message.connection != self._connection:
                continue
            if message.qos == 2:
                client.send_pubrec(message.mid)
            elif message.qos == 1:
                client.ack(message.mid, message.qos)
        if isinstance(batch, Qos2Batch):
            self._receipts.settle(batch, client, self._connection)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        # loop_stop joins paho's thread, which ends within one select (at most 1 s).
        await asyncio.to_thread(client.loop_stop)
        self._inbox.clear()
        self._releases.clear()
        self._connection += 1

    # -- paho's side: these run in its network thread -----------------------------------

    def _new_client(self) -> Qos2Client:
        settings = self._settings
        v5 = settings.protocol == "5"
        client = Qos2Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False, manual_ack=True)
        client.connect_timeout = self._timeout_s
        client.reconnect_delay_set(_RECONNECT_MIN_S, _RECONNECT_MAX_S)
        if settings.address()[2]:
            client.tls_set_context(client_tls_context(settings.tls))
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_release = self._on_release
        return client

    def _connect_properties(self) -> Properties | None:
        if self._settings.protocol != "5":
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's constructor is untyped
        properties.SessionExpiryInterval = self._settings.session_expiry_s
        properties.ReceiveMaximum = self._settings.max_inflight
        # The broker drops bigger messages for us instead of sending them.
        properties.MaximumPacketSize = self._settings.max_message_bytes + 65_536
        return properties

    def _on_pre_connect(self, client: mqtt.Client, _userdata: Any) -> None:
        if self._settings.username:
            try:  # read at every connect: a rotated password file is picked up
                password = self._settings.read_password()
            except (OSError, ValueError) as exc:
                self._call(self._log.error, "mqtt_password_unreadable", error=str(exc))
                password = None
            client.username_pw_set(self._settings.username, password)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _properties: Properties | None) -> None:
        if reason.is_failure:
            self._call(self._fail, f"mqtt broker refused the connection: {reason}")
            return
        self._connection += 1
        self._call(self._connected, flags.session_present, self._connection)
        v5 = self._settings.protocol == "5"
        if v5 or not flags.session_present or not self._subscribed_once:
            # retainHandling 1: retained messages only for a subscription that is new.
            topics = self._settings.topics
            qos = self._settings.qos
            if v5:
                options = SubscribeOptions(qos=qos, retainHandling=1)
                client.subscribe([(topic, options) for topic in topics])
            else:
                client.subscribe([(topic, int(qos)) for topic in topics])
        else:
            self._call(self._subscribed)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # Before the first success this ends start(); later, paho keeps retrying.
        host, port, _ = self._settings.address()
        self._call(self._fail, f"mqtt broker {host}:{port}: cannot connect")

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _properties: Properties | None) -> None:
        refused = [f"{topic} ({reason})" for topic, reason in
                   zip(self._settings.topics, reasons, strict=False) if reason.is_failure]
        if refused:
            self._call(self._fail, f"mqtt broker refused the subscription to {', '.join(refused)}")
        else:
            self._call(self._subscribed)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _properties: Properties | None) -> None:
        self._connection += 1
        self._call(self._disconnected, str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        user = ()
        if message.properties is not None and hasattr(message.properties, "UserProperty"):
            user = tuple(message.properties.UserProperty)
        if self._client is None:
            return  # stopped: the broker sends it again
        if message.qos == 0 and len(self._inbox) >= QOS0_QUEUE_LIMIT:
            self.dropped_qos0 += 1
            if self.dropped_qos0 % 1000 == 1:
                self._call(self._log.warning, "mqtt_qos0_dropped", dropped=self.dropped_qos0)
            return
        self._inbox.add(MqttMessage(
            message.topic, bytes(message.payload), message.qos, bool(message.retain),
            message.mid, self._connection, f"{self._id_prefix}-{next(self._ids)}", user))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._wake)

    def _on_release(self, mid: int) -> None:
        if self._client is None:
            return  # stopped: the broker sends it again
        self._releases.append(Release(mid, self._connection))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._wake)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: function(*args, **kwargs))

    # -- the event loop's side ---------------------------------------------------------

    def _connected(self, session_present: bool, connection: int) -> None:
        self._log.info("mqtt_connected", session_present=session_present,
                       connection=connection)

    def _subscribed(self) -> None:
        self._subscribed_once = True
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _fail(self, error: str) -> None:
        self._log.error("mqtt_connect_failed", error=error)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(MqttConnectError(error))

    def _disconnected(self, reason: str) -> None:
        # What waits here is sent again on the next connection (receive skips it);
        # acks of this connection are void.
        if self._client is not None:
            self._log.warning("mqtt_disconnected", reason=reason, requeued=len(self._inbox))

    def _wake(self) -> None:
        self._wake_pending = False
        self._inbox.wake()
