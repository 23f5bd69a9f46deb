"""Prometheus series of the absence watchdog (in the process that runs it: ``consume``
with an absence rule). Dashboards and alerts query these names: they never change."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from providers.devices.watchdog import SweepResult


@dataclass(frozen=True)
class WatchdogMetrics:
    absences: Counter
    suppressed: Counter
    detection_delay_s: Histogram
    next_deadline_s: Gauge
    lease_held: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WatchdogMetrics:
        return cls(
            absences=Counter("device_absences", "device.absent events this process emitted.",
                             registry=registry),
            suppressed=Counter("device_absences_suppressed", "Due devices whose absence a "
                               "maintenance window deferred.", registry=registry),
            detection_delay_s=Histogram(
                "device_absence_detection_delay_seconds", "From a device's deadline to its "
                "device.absent.", registry=registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)),
            next_deadline_s=Gauge("device_watchdog_next_deadline_timestamp_seconds",
                                  "The earliest deadline still pending (0: none).",
                                  registry=registry, multiprocess_mode="min"),
            lease_held=Gauge("device_watchdog_lease_held", "1 while this process sweeps.",
                             registry=registry, multiprocess_mode="max"),
        )

    def observe(self, result: SweepResult | None) -> None:
        """One step of the watchdog: None when a standby."""
        self.lease_held.set(0 if result is None or result.fenced else 1)
        if result is None or result.fenced:
            return
        self.absences.inc(result.absent)
        self.suppressed.inc(result.suppressed)
        for delay_ms in result.delays_ms:
            self.detection_delay_s.observe(delay_ms / 1000)
        self.next_deadline_s.set((result.next_deadline_ms or 0) / 1000)
