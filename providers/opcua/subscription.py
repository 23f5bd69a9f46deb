"""``opcua-source`` in subscription mode: a :class:`framework.polling.PushSource` over
one asyncua session with one subscription that monitors every configured node.

asyncua calls :class:`_Handler` on the event loop for each data change; the change
goes to an inbox that the push connector drains into fenced appends. asyncua
acknowledges notifications to the server by itself (in its next Publish request),
not after our append: what the server re-sends after a reconnect is therefore not
the unacknowledged notifications but the *current* value of every node (the first
notification of a new subscription). That is the guarantee: the value a node holds
whenever the source (re)subscribes is published, with its source timestamp; changes
that a node went through while nothing listened (the server keeps no history) are
gone, and that window is reported as a gap.

Connection loss (server restart, network) is seen by asyncua's watchdog
(``connection_lost_callback``) or by a status change of the subscription
(BadShutdown, BadTimeout): the next ``receive`` raises, the push connector stops the
source and starts it again in its next window, after a backoff
(:class:`providers.reconnect.ReconnectBackoff`). Each start after the first logs
``opcua_gap`` (from the last value appended or the loss, to the new subscription)
and puts ``metadata.gap`` on the first new value of each node. The time of the last
batch is saved with it (``positions``), so a restarted process reports its gap too.

A node the server refuses (unknown, not readable) is logged (``opcua_node_refused``
naming it and the status) and the other nodes are monitored; when every node is
refused the start fails.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeNotif

from framework.core import Logger, PermanentSourceError
from framework.polling import Batch
from providers.inbox import Inbox
from providers.opcua.client import OpcUaConnectError, close_client, open_client
from providers.opcua.config import OpcUaSourceConfig
from providers.opcua.events import Reading
from providers.reconnect import ReconnectBackoff

LINGER_S = 0.005
# Changes waiting beyond this many force a new subscription (which sends every
# node's current value) rather than dropping any: a gap, reported, and no memory blow-up.
INBOX_LIMIT = 100_000
POSITION = "lastBatchAt"


class _Handler:
    """asyncua's callbacks, on the event loop."""

    def __init__(self, source: OpcUaSubscriptionSource) -> None:
        self._source = source

    def datachange_notification(self, node: Any, _val: Any, data: DataChangeNotif) -> None:
        self._source.changed(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self._source.lost(f"subscription status {status.Status.name}")


class OpcUaSubscriptionSource:
    def __init__(self, settings: OpcUaSourceConfig, *, timeout_s: float, logger: Logger) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._log = logger
        self._client: Client | None = None
        self._inbox: Inbox[Reading] = Inbox(LINGER_S)
        self._names: dict[ua.NodeId, str] = {
            ua.NodeId.from_string(text): text for text in settings.node_ids}
        self._lost_reason: str | None = None
        self._lost_at: datetime | None = None
        self._last_loss: str | None = None
        # Whether a subscription was running since the last start: only then does a
        # stop open a gap (a start that keeps failing has nothing to lose yet).
        self._listening = False
        self._backoff = ReconnectBackoff()
        self._gap: dict[str, Any] | None = None
        self._gap_pending: set[str] = set()
        self._last_stamp: dict[str, datetime | None] = {}
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count()

    async def start(self, positions: Mapping[str, str]) -> None:
        await self._backoff.pause()
        # Before subscribing: the new subscription's first values may come at once.
        gap = self._gap_since(positions.get(POSITION))
        self._gap, self._gap_pending = gap, set(self._names.values()) if gap else set()
        try:
            await self._subscribe()
        except BaseException:
            self._backoff.failed()
            self._gap_pending = set()  # the next start reports the gap
            raise
        self._backoff.succeeded()
        if gap is not None:
            self._lost_at, self._last_loss = None, None
            self._log.warning("opcua_gap", endpoint=self._settings.endpoint, **gap)
        self._listening = True

    async def _subscribe(self) -> None:
        self._lost_reason = None
        client = await open_client(self._settings, timeout_s=self._timeout_s)
        self._client = client
        client.connection_lost_callback = self._connection_lost
        tuning = self._settings.subscription_settings
        try:
            async with asyncio.timeout(self._timeout_s):
                subscription = await client.create_subscription(
                    tuning.publishing_interval_ms, _Handler(self))
                nodes = [client.get_node(node) for node in self._names]
                results = await subscription.subscribe_data_change(
                    nodes, queuesize=tuning.queue_size,
                    sampling_interval=tuning.sampling_interval_ms)
        except TimeoutError:
            raise OpcUaConnectError(f"opcua server {self._settings.endpoint}: subscription not "
                                    f"created within {self._timeout_s:g} s") from None
        except ua.UaStatusCodeError as exc:
            raise OpcUaConnectError(f"opcua server {self._settings.endpoint}: subscription "
                                    f"refused: {ua.StatusCode(exc.code).name}") from None
        self._check_monitored(results)

    def _check_monitored(self, results: list[Any]) -> None:
        refused = []
        for name, result in zip(self._names.values(), results, strict=True):
            if isinstance(result, ua.StatusCode):
                refused.append(f"{name} ({result.name})")
                self._log.error("opcua_node_refused", node_id=name, status=result.name,
                                endpoint=self._settings.endpoint)
        if len(refused) == len(self._names):
            raise PermanentSourceError(f"opcua server {self._settings.endpoint}: every node "
                                       f"was refused: {', '.join(refused)}")

    def _gap_since(self, saved: str | None) -> dict[str, Any] | None:
        """The window nothing listened in: since the loss seen by this process, else
        since the last batch a previous process appended; None the first time."""
        since = self._lost_at
        reason = self._last_loss or "source restarted"
        if since is None and saved:
            since, reason = datetime.fromisoformat(saved), "connector restarted"
        if since is None:
            return None  # the first start of this connector: nothing was missed
        now = datetime.now(UTC)
        return {"from": since.isoformat(), "to": now.isoformat(),
                "ms": max(0, round((now - since).total_seconds() * 1000)), "reason": reason}

    # -- asyncua's side ---------------------------------------------------------------

    def changed(self, node: ua.NodeId, data: ua.DataValue) -> None:
        name = self._names.get(node, node.to_string())
        reading = Reading.of(name, data, datetime.now(UTC),
                             f"{self._id_prefix}-{next(self._ids)}")
        if name in self._gap_pending and reading.stamp != self._last_stamp.get(name):
            # The first value that is new since the gap carries it (one the server
            # repeats because it did not change, and that was appended, is dropped
            # as a duplicate).
            self._gap_pending.discard(name)
            reading = _with_gap(reading, self._gap)
        if len(self._inbox) >= INBOX_LIMIT:
            self.lost(f"more than {INBOX_LIMIT} changes waiting")
            return
        self._inbox.add(reading)
        self._inbox.wake()

    async def _connection_lost(self, exc: Exception) -> None:
        self.lost(f"connection lost: {type(exc).__name__}: {exc}")

    def lost(self, reason: str) -> None:
        if self._lost_reason is None and self._client is not None:
            self._lost_reason = reason
            if self._listening:
                self._lost_at = datetime.now(UTC)
            self._log.warning("opcua_connection_lost", endpoint=self._settings.endpoint,
                              reason=reason)
            self._inbox.wake()

    # -- the push connector's side ----------------------------------------------------

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Reading]:
        if self._lost_reason is not None:
            raise OpcUaConnectError(f"opcua server {self._settings.endpoint}: "
                                    f"{self._lost_reason}")
        taken = await self._inbox.take(max_messages, wait_s)
        if not taken:
            return Batch()
        return Batch(taken, {POSITION: taken[-1].received_at.isoformat()})

    async def acknowledge(self, batch: Batch[Reading]) -> None:
        """Nothing to tell the server (asyncua acknowledged the notifications on
        receipt); remember each node's last appended timestamp, so that the value a
        new subscription repeats is not taken for the first one after a gap."""
        for reading in batch.messages:
            self._last_stamp[reading.node_id] = reading.stamp

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._listening:
            self._last_loss = self._lost_reason or "source stopped"
            self._lost_at = self._lost_at or datetime.now(UTC)
        self._listening = False
        self._lost_reason = None
        client.connection_lost_callback = None
        self._inbox.clear()
        await close_client(client, timeout_s=min(self._timeout_s, 2.0))


def _with_gap(reading: Reading, gap: dict[str, Any] | None) -> Reading:
    return Reading(reading.node_id, reading.value, reading.variant_type, reading.status,
                   reading.source_timestamp, reading.server_timestamp, reading.received_at,
                   reading.local_id, gap)
