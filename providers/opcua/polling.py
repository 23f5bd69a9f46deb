"""``opcua-source`` in polling mode: every ``pollIntervalMs`` one Read request for all
configured nodes, through the poller (fetch, diff, fenced commit).

Each node is an item whose id is its node id and whose version is its value and
status: a value or status that changed is published (with its source timestamp in
the event), an unchanged one is not, and a crash never loses or repeats a change
(the publish and the save are one fenced commit). A node the server refuses
(unknown, not readable, access denied) is a failed item naming it and the status;
the others are published. The session is kept between polls; when the server is
gone the poll fails (the worker logs it) and the next poll connects again. The first
poll after a reconnect, or of a new process (since the last poll saved), logs
``opcua_gap`` and its published values carry ``metadata.gap``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from asyncua import Client, ua

from framework.core import Logger
from framework.polling import ConnectorState, FetchResult
from providers.opcua.client import OpcUaConnectError, close_client, open_client
from providers.opcua.config import OpcUaSourceConfig
from providers.opcua.events import Reading
from providers.opcua.values import json_value, status_name

# Statuses that say "this node cannot be read as configured", not "its value is bad".
_REFUSED = frozenset({
    ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid, ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
})


POLLED_AT = "lastPollAt"


class NodeReadError(Exception):
    """A node this poll could not read (the message names it and why)."""


@dataclass(frozen=True, slots=True)
class Polled:
    node_id: str
    reading: Reading | None = None
    error: str | None = None
    version: str = ""


class OpcUaPoller:
    def __init__(self, settings: OpcUaSourceConfig, *, timeout_s: float, logger: Logger) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._log = logger
        self._client: Client | None = None
        self._lost_at: datetime | None = None
        self._first = True  # the first session of this process
        self._nodes = [ua.NodeId.from_string(text) for text in settings.node_ids]

    async def fetch(self, _: object, state: ConnectorState) -> FetchResult[Polled]:
        gap = await self._connect(state.cursors.get(POLLED_AT))
        values = await self._read()
        received_at = datetime.now(UTC)
        items = [self._polled(name, value, received_at, gap)
                 for name, value in zip(self._settings.node_ids, values, strict=True)]
        # Not complete: a refused node keeps its saved version. The time of the read
        # is saved with the poll, so that the next process knows since when it missed.
        return FetchResult(items=items, complete=False,
                           cursors={POLLED_AT: received_at.isoformat()})

    async def _connect(self, saved: str | None) -> dict[str, Any] | None:
        if self._client is not None:
            return None
        self._client = await open_client(self._settings, timeout_s=self._timeout_s)
        first, self._first = self._first, False
        since, reason = self._lost_at, "connection lost"
        if since is None and first and saved:
            since, reason = datetime.fromisoformat(saved), "connector restarted"
        if since is None:
            return None
        now = datetime.now(UTC)
        gap = {"from": since.isoformat(), "to": now.isoformat(),
               "ms": max(0, round((now - since).total_seconds() * 1000)), "reason": reason}
        self._lost_at = None
        self._log.warning("opcua_gap", endpoint=self._settings.endpoint, **gap)
        return gap

    async def _read(self) -> list[ua.DataValue]:
        client = self._client
        assert client is not None
        params = ua.ReadParameters()
        params.NodesToRead = [ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value)
                              for node in self._nodes]
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        try:
            async with asyncio.timeout(self._timeout_s):
                return list(await client.uaclient.read(params))
        except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
            self._lost_at = datetime.now(UTC)
            await self.aclose()
            raise OpcUaConnectError(f"opcua server {self._settings.endpoint}: read of "
                                    f"{len(self._nodes)} nodes failed: "
                                    f"{type(exc).__name__}: {exc}") from None

    def _polled(self, name: str, value: ua.DataValue, received_at: datetime,
                gap: dict[str, Any] | None) -> Polled:
        status = value.StatusCode
        if status is not None and status.value in _REFUSED:
            return Polled(name, error=f"opcua node {name} on {self._settings.endpoint}: not "
                                      f"read: {status_name(status)}")
        reading = replace(Reading.of(name, value, received_at), gap=gap)
        try:
            shown = json_value(reading.value, self._settings.max_value_bytes)
        except ValueError as exc:
            return Polled(name, error=f"opcua node {name}: {exc}")
        version = orjson.dumps([shown, status_name(status)]).decode()
        return Polled(name, reading, version=version)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client, timeout_s=min(self._timeout_s, 2.0))


def polled_version(item: Polled) -> str:
    """The poller's change detector (an unreadable node is a failed item)."""
    if item.error is not None:
        raise NodeReadError(item.error)
    return item.version
