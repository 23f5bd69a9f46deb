"""Reading the device events stream back in tests."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from providers.devices import DEFAULT_EVENTS_STREAM


async def device_events(redis: Redis, stream: str = DEFAULT_EVENTS_STREAM) -> list[dict[str, Any]]:
    entries = await redis.xrange(stream)
    events = []
    for _, fields in entries:
        assert fields["schema"] == "base-event/1"
        events.append(json.loads(fields["event"]))
    return events


def tally(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(type, deviceId) -> how many."""
    return Counter((e["type"], e["payload"]["deviceId"]) for e in events)
