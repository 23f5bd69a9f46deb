"""The health analysis at the end of a canary's soak (and after each wave): which of
the updated devices are unhealthy, and why.

A device is unhealthy when, since its stage began, the device events stream holds a
``device.absent`` or ``device.error`` event for it (the absence watchdog's, or a
rule's), or when, asked now, it does not answer, runs another version or reports a
failed self-test. The stream is read in pages up to ``max_events`` entries: a huge
stream delays nothing beyond that bound (the probe still runs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from providers.devices.ota.plan import HEALTH_EVENT_TYPES

Probe = Callable[[str], Awaitable[Mapping[str, Any] | None]]
PAGE = 1000


@dataclass
class HealthReport:
    checked: int = 0
    unhealthy: dict[str, str] = field(default_factory=dict)
    events_read: int = 0

    @property
    def failed(self) -> int:
        return len(self.unhealthy)


async def analyse_health(redis: Redis, devices: Collection[str], *, version: str,
                         events_stream: str, events_from: str, probe: Probe,
                         concurrency: int = 200, max_events: int = 200_000) -> HealthReport:
    """``events_from``: the stream id the stage began at (exclusive)."""
    report = HealthReport(checked=len(devices))
    wanted = set(devices)
    await _read_events(redis, report, wanted, events_stream, events_from, max_events)
    slots = asyncio.Semaphore(concurrency)

    async def check(device_id: str) -> None:
        async with slots:
            state = await probe(device_id)
        problem = _problem(state, version)
        if problem is not None:
            report.unhealthy.setdefault(device_id, problem)

    await asyncio.gather(*(check(device_id) for device_id in wanted
                           if device_id not in report.unhealthy))
    return report


async def _read_events(redis: Redis, report: HealthReport, wanted: set[str], stream: str,
                       after: str, max_events: int) -> None:
    while report.events_read < max_events:
        entries = await redis.xrange(stream, min=f"({after}", max="+", count=PAGE)
        if not entries:
            return
        for entry_id, fields in entries:
            after = _text(entry_id)
            report.events_read += 1
            found = _device_event(fields or {})
            if found is not None and found[0] in wanted:
                report.unhealthy.setdefault(found[0], f"{found[1]} event {after}")
        if len(entries) < PAGE:
            return


def _device_event(fields: Mapping[Any, Any]) -> tuple[str, str] | None:
    """(device id, type) of a health event; None for anything else or malformed."""
    raw = fields.get(b"event", fields.get("event"))
    try:
        event = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or event.get("type") not in HEALTH_EVENT_TYPES:
        return None
    payload = event.get("payload")
    device_id = payload.get("deviceId") if isinstance(payload, dict) else None
    return (device_id, str(event["type"])) if isinstance(device_id, str) else None


def _problem(state: Mapping[str, Any] | None, version: str) -> str | None:
    if state is None:
        return "does not answer"
    if state.get("firmware_version") != version:
        return f"runs {state.get('firmware_version')}, not {version}"
    if state.get("self_test_passed") is not True:
        return "self-test failed"
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
