"""An OPC-UA value as the fleet's source event, and the ids that make it unique.

``{"source": "opcua", "value": 21.5, "timestamp": <source timestamp>, "nodeId":
"ns=2;s=Temperature", "metadata": {"statusCode": "Good", "status": 0,
"sourceTimestamp": ..., "serverTimestamp": ..., "variantType": "Double",
"endpoint": ..., "gap": {...}?}}``

The event's timestamp is the source timestamp (when the device says the value
changed), else the server timestamp, else the time it was received.

Item id (and dedupe key): the node id and its source timestamp (else its server
timestamp), plus the status when it is not Good: the same value reported again
(the first notification of a new subscription repeats the current value) is the same
item and is appended once. A value with neither timestamp gets a local id: it is
never taken for another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import ua

from framework.polling import source_event
from providers.opcua.values import json_value, status_name


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one node as the server reported it (a data change or a read)."""

    node_id: str
    value: Any
    variant_type: str | None
    status: ua.StatusCode | None
    source_timestamp: datetime | None
    server_timestamp: datetime | None
    received_at: datetime
    local_id: str = ""
    # Set on the first value of a node after the source was not listening.
    gap: dict[str, Any] | None = None

    @classmethod
    def of(cls, node_id: str, data: ua.DataValue, received_at: datetime,
           local_id: str = "") -> Reading:
        variant = data.Value
        return cls(node_id, None if variant is None else variant.Value,
                   None if variant is None else variant.VariantType.name,
                   data.StatusCode, data.SourceTimestamp, data.ServerTimestamp, received_at,
                   local_id)

    @property
    def stamp(self) -> datetime | None:
        return self.source_timestamp or self.server_timestamp

    @property
    def good(self) -> bool:
        return self.status is None or self.status.is_good()

    def key(self) -> str | None:
        """``node@timestamp`` (``!Status`` when not Good); None without a timestamp."""
        stamp = self.stamp
        if stamp is None:
            return None
        suffix = "" if self.good else f"!{status_name(self.status)}"
        return f"{self.node_id}@{stamp.isoformat()}{suffix}"

    def item_id(self) -> str:
        return self.key() or f"{self.node_id}#{self.local_id}"


@dataclass(frozen=True)
class OpcUaEvents:
    """How one connector's readings become events."""

    source: str
    endpoint: str
    max_value_bytes: int

    def event(self, reading: Reading) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "statusCode": status_name(reading.status),
            "status": 0 if reading.status is None else reading.status.value,
            "sourceTimestamp": _iso(reading.source_timestamp),
            "serverTimestamp": _iso(reading.server_timestamp),
            "variantType": reading.variant_type,
            "endpoint": self.endpoint,
        }
        if reading.gap is not None:
            metadata["gap"] = reading.gap
        try:
            value = json_value(reading.value, self.max_value_bytes)
        except ValueError as exc:
            raise ValueError(f"opcua node {reading.node_id}: {exc}") from None
        return source_event(source=self.source, value=value, node_id=reading.node_id,
                            timestamp=reading.stamp or reading.received_at, metadata=metadata)

    def raw(self, reading: Reading) -> bytes:
        """What is kept of a reading that is not an event (its start, as text)."""
        return repr(reading.value)[:4096].encode(errors="replace")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
