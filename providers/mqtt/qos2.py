"""QoS 2 received exactly once: the message is in the stream before the broker hears
PUBREC, and its packet id is remembered, in the same fenced commit, until PUBREL.

MQTT hands a QoS 2 message over at PUBREC; from then on the broker sends PUBREL
(not the message) until it gets PUBCOMP, and may reuse the packet id only after
that. paho 2 sends PUBREC on receipt even with ``manual_ack`` (only PUBCOMP waits),
so a crash before the append would lose the message. :class:`Qos2Client` holds
PUBREC back and tells us of each PUBREL instead of answering it.

The receiver's state of MQTT 4.3.3 (the packet ids acknowledged with PUBREC and not
yet released) is saved with the connector's positions (``mqtt.qos2``):

* PUBLISH with an id not saved: appended; the id saved with it; then PUBREC.
* PUBLISH with a saved id (a redelivery, DUP): already in the stream: PUBREC only.
* PUBREL of a saved id: the id is removed by a commit; then PUBCOMP.
* PUBREL of an id not saved (a PUBCOMP was lost): PUBCOMP at once.

A crash between any two steps repeats the broker's last packet on the next
connection of the session, and the saved ids answer it without a second append.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from paho.mqtt import client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from framework.polling import Batch

# The positions field that holds the saved packet ids.
POSITION = "mqtt.qos2"
_MAX_PACKET_ID = 65535


class Released(Protocol):
    def __call__(self, mid: int) -> None: ...


class Qos2Client(mqtt.Client):
    """paho's client whose QoS 2 receipt waits for :meth:`send_pubrec` (after the
    append) and whose PUBRELs go to ``on_release`` instead of being answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_release: Released | None = None
        self._holding = False
        self._held_mid: int | None = None

    # -- paho's network thread --------------------------------------------------------

    def _handle_publish(self) -> MQTTErrorCode:
        # paho stores an incoming QoS 2 message and sends PUBREC: keep the PUBREC,
        # take the message back, and hand it over now, as for QoS 1.
        self._holding, self._held_mid = True, None
        try:
            result = super()._handle_publish()
        finally:
            self._holding = False
        if self._held_mid is not None:
            with self._in_message_mutex:
                message = self._in_messages.pop(self._held_mid, None)
            if message is not None:
                self._handle_on_message(message)
        return result

    def _send_pubrec(self, mid: int) -> MQTTErrorCode:
        if self._holding:  # only ever set by _handle_publish, in this thread
            self._held_mid = mid
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._send_pubrec(mid)

    def _handle_pubrel(self) -> MQTTErrorCode:
        # The packet id is the first two bytes of PUBREL's variable header (MQTT 3.6.2).
        packet = self._in_packet["packet"]
        if len(packet) < 2:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        (mid,) = struct.unpack("!H", bytes(packet[:2]))
        if self.on_release is not None:
            self.on_release(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- the event loop's thread --------------------------------------------------------

    def send_pubrec(self, mid: int) -> None:
        """The QoS 2 message ``mid`` is kept: the broker may now send PUBREL."""
        super()._send_pubrec(mid)  # not the override: it holds only in paho's thread

    def send_pubcomp(self, mid: int) -> None:
        """``mid``'s release is saved: the broker may reuse the packet id."""
        self._send_pubcomp(mid)


@dataclass(frozen=True, slots=True)
class Release:
    """A PUBREL, with the connection it came on (a PUBCOMP goes back on that one only)."""

    mid: int
    connection: int


class Received(Protocol):
    @property
    def qos(self) -> int: ...
    @property
    def mid(self) -> int: ...


M = TypeVar("M", bound=Received)


@dataclass(frozen=True)
class Qos2Batch(Batch[M]):
    """A batch with what its commit settles: the releases to answer with PUBCOMP
    and the packet ids saved with it."""

    released: tuple[Release, ...] = ()
    saved: frozenset[int] = field(default_factory=frozenset)


@dataclass
class Qos2Receipts:
    """The saved packet ids (see the module docstring): ``saved`` is what the last
    successful commit holds."""

    saved: frozenset[int] = frozenset()

    def resume(self, positions: Mapping[str, str]) -> None:
        self.saved = parse_ids(positions.get(POSITION, ""))

    def batch(self, messages: Sequence[M], releases: Sequence[Release], client: Qos2Client,
              connection: int) -> Qos2Batch[M]:
        """The batch to commit: the messages not in the stream yet and the ids to
        save with them. A redelivered QoS 2 message already saved gets its PUBREC,
        and a release of an id not saved its PUBCOMP, at once."""
        fresh: list[M] = []
        for message in messages:  # all of the current connection
            if message.qos == 2 and message.mid in self.saved:
                client.send_pubrec(message.mid)
            else:
                fresh.append(message)
        known = tuple(release for release in releases if release.mid in self.saved)
        for release in releases:
            if release.mid not in self.saved and release.connection == connection:
                client.send_pubcomp(release.mid)
        saved = (self.saved | {m.mid for m in fresh if m.qos == 2}) - {r.mid for r in known}
        return Qos2Batch(fresh, {POSITION: encode_ids(saved)}, released=known,
                         saved=frozenset(saved))

    def settle(self, batch: Qos2Batch[M], client: Qos2Client, connection: int) -> None:
        """``batch`` is committed: its releases may be completed."""
        self.saved = batch.saved
        for release in batch.released:
            if release.connection == connection:  # else the broker sends PUBREL again
                client.send_pubcomp(release.mid)


def encode_ids(ids: Iterable[int]) -> str:
    return ",".join(str(mid) for mid in sorted(ids))


def parse_ids(text: str) -> frozenset[int]:
    """The saved ids; a value that is not a list of packet ids raises ``ValueError``
    naming it (the state was edited by hand, or by another connector type)."""
    if not text:
        return frozenset()
    try:
        ids = frozenset(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"positions {POSITION}: {text[:80]!r} is not a list of packet ids"
                         ) from None
    if any(not 0 < mid <= _MAX_PACKET_ID for mid in ids):
        raise ValueError(f"positions {POSITION}: packet ids are 1..{_MAX_PACKET_ID}")
    return ids
