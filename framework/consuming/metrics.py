"""Prometheus series of the stream consumers. Dashboards and alerts query these names
(``event_source_*`` by source, ``consumer_*`` by group): they never change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from framework.consuming.delivery import Delivery


@dataclass(frozen=True)
class ConsumerMetrics:
    registry: CollectorRegistry
    received: Counter
    lag_ms: Gauge
    settled: Counter
    in_flight: Gauge
    group_lag: Gauge
    group_pending: Gauge
    dead_letters: Gauge
    # labels() checks its arguments and takes a lock on every call, which costs more than
    # the inc() itself; the entry path asks for the same few children again and again.
    _children: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("received", "lag_ms", "settled", "in_flight"):
            self._children[name] = cache(getattr(self, name).labels)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        return cls(
            registry=registry,
            received=Counter(
                "event_source_received", "Stream entries received by consumers, by source.",
                ["source_id", "connector"], registry=registry,
            ),
            lag_ms=Gauge(
                "event_source_lag_ms", "Milliseconds between the XADD of the last entry "
                "received from the source (its entry id) and its first delivery.",
                ["source_id"], registry=registry, multiprocess_mode="max",
            ),
            settled=Counter(
                "consumer_entries", "Entries by outcome (acked, dead_lettered, failed, "
                "reclaimed, lost).", ["stream", "group", "outcome"], registry=registry,
            ),
            in_flight=Gauge(
                "consumer_in_flight", "Entries this process holds and has not settled.",
                ["group"], registry=registry, multiprocess_mode="livesum",
            ),
            group_lag=Gauge(
                "consumer_group_lag", "Entries of the stream not yet delivered to the group.",
                ["stream", "group"], registry=registry, multiprocess_mode="max",
            ),
            group_pending=Gauge(
                "consumer_group_pending", "Entries delivered to the group and not acknowledged.",
                ["stream", "group"], registry=registry, multiprocess_mode="max",
            ),
            dead_letters=Gauge(
                "consumer_dead_letters", "Entries in the stream's dead-letter stream.",
                ["stream"], registry=registry, multiprocess_mode="max",
            ),
        )

    def observe_received(self, deliveries: Iterable[Delivery], *, now_ms: int) -> None:
        """Count a batch of deliveries by source; a source's lag is that of its last
        first delivery (a redelivery's age says nothing about the source)."""
        counts: dict[tuple[str, str], int] = {}
        lags: dict[str, int] = {}
        for delivery in deliveries:
            source = source_of(delivery.stream, delivery.fields)
            counts[source] = counts.get(source, 0) + 1
            if delivery.delivery_count == 1:
                lags[source[0]] = max(0, now_ms - entry_time_ms(delivery.entry_id))
        for (source_id, connector), count in counts.items():
            self._children["received"](source_id, connector).inc(count)
        for source_id, lag_ms in lags.items():
            self._children["lag_ms"](source_id).set(lag_ms)

    def count_settled(self, stream: str, group: str, outcome: str, count: int = 1) -> None:
        self._children["settled"](stream, group, outcome).inc(count)

    def set_in_flight(self, group: str, count: int) -> None:
        self._children["in_flight"](group).set(count)


def source_of(stream: str, fields: Mapping[str, str]) -> tuple[str, str]:
    """(source id, connector type): a polling connector's entries name both; other
    events name their ``source``; else the stream stands for the source."""
    if "connector" in fields:
        return fields["connector"], fields.get("type", "")
    return fields.get("source") or stream, ""


def entry_time_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (when Redis added it)."""
    return int(entry_id.partition("-")[0])
