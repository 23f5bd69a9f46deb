"""Prometheus series of the stream consumers (seed 000 names where the seed has one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from framework.delivery import Delivery


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

    def observe_received(self, delivery: Delivery, *, now_ms: int) -> None:
        source_id, connector = source_of(delivery.stream, delivery.fields)
        self.received.labels(source_id, connector).inc()
        if delivery.delivery_count == 1:  # a redelivery's age says nothing about the source
            self.lag_ms.labels(source_id).set(max(0, now_ms - entry_time_ms(delivery.entry_id)))


def source_of(stream: str, fields: Mapping[str, str]) -> tuple[str, str]:
    """(source id, connector type): a polling connector's entries name both; other
    events name their ``source``; else the stream stands for the source."""
    if "connector" in fields:
        return fields["connector"], fields.get("type", "")
    return fields.get("source") or stream, ""


def entry_time_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (when Redis added it)."""
    return int(entry_id.partition("-")[0])
