"""Per-group settings of the registry: the absence timeout T and maintenance windows.

A group's timeout (``fleet:{devices}:timeouts``, ms) beats the one a heartbeat
carries (the rule's ``for``). A maintenance window (``fleet:{devices}:maintenance:G``,
window id -> JSON) suppresses the group's absences while it is open: a device whose
deadline passes during the window gets a new deadline at the window's end plus its
timeout, so the network has one full period to come back before anyone is told.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from framework.core import Clock, iso_utc
from providers.devices.registry_keys import DeviceKeys, check_group

MAX_WINDOW_S = 31 * 86400
MAX_REASON = 500


@dataclass(frozen=True)
class MaintenanceWindow:
    id: str
    group: str
    start_ms: int
    end_ms: int
    reason: str
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "startMs": self.start_ms,
                "endMs": self.end_ms, "start": iso_utc(self.start_ms / 1000),
                "end": iso_utc(self.end_ms / 1000), "reason": self.reason,
                "createdBy": self.created_by}

    def is_open(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms < self.end_ms


class DeviceGroups:
    def __init__(self, redis: Redis, *, clock: Clock, keys: DeviceKeys | None = None) -> None:
        self.keys = keys or DeviceKeys()
        self._redis = redis
        self._clock = clock

    async def set_timeout(self, group: str, timeout_s: float) -> None:
        """Applies from each device's next heartbeat."""
        group = check_group(group)
        if not 1 <= timeout_s <= 366 * 86400:
            raise ValueError(f"group {group}: timeout must be 1 s to 366 days, got {timeout_s}")
        await self._redis.hset(self.keys.timeouts, group, int(timeout_s * 1000))

    async def timeouts(self) -> dict[str, int]:
        """group -> absence timeout in ms."""
        raw = await self._redis.hgetall(self.keys.timeouts)
        return {str(group): int(ms) for group, ms in raw.items()}

    async def add_window(self, group: str, *, start_s: float, end_s: float, reason: str,
                         created_by: str) -> MaintenanceWindow:
        group = check_group(group)
        if not end_s > start_s:
            raise ValueError("maintenance window: end must be after start")
        if end_s - start_s > MAX_WINDOW_S:
            raise ValueError(f"maintenance window: at most {MAX_WINDOW_S // 86400} days long")
        if end_s <= self._clock.time():
            raise ValueError("maintenance window: it ends in the past")
        if not 1 <= len(reason) <= MAX_REASON:
            raise ValueError(f"maintenance window: reason must be 1 to {MAX_REASON} characters")
        window = MaintenanceWindow(f"mw_{secrets.token_hex(6)}", group, int(start_s * 1000),
                                   int(end_s * 1000), reason, created_by)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.maintenance(group), window.id, json.dumps(window.as_json()))
            pipe.sadd(self.keys.maintenance_groups, group)
            await pipe.execute()
        return window

    async def windows(self, group: str | None = None) -> list[MaintenanceWindow]:
        """Windows not yet over (ended ones are dropped as they are read), by start."""
        groups = [check_group(group)] if group is not None else sorted(
            str(g) for g in await self._redis.smembers(self.keys.maintenance_groups))
        now_ms = int(self._clock.time() * 1000)
        found: list[MaintenanceWindow] = []
        for name in groups:
            for window_id, raw in (await self._redis.hgetall(self.keys.maintenance(name))).items():
                window = _window(name, raw)
                if window is None or window.end_ms <= now_ms:
                    await self._redis.hdel(self.keys.maintenance(name), window_id)
                else:
                    found.append(window)
        return sorted(found, key=lambda w: (w.start_ms, w.id))

    async def remove_window(self, group: str, window_id: str) -> MaintenanceWindow | None:
        group = check_group(group)
        key = self.keys.maintenance(group)
        raw = await self._redis.hget(key, window_id)
        if raw is None or not await self._redis.hdel(key, window_id):
            return None
        return _window(group, raw)

    async def open_window(self, group: str) -> MaintenanceWindow | None:
        now_ms = int(self._clock.time() * 1000)
        return next((w for w in await self.windows(group) if w.is_open(now_ms)), None)


def _window(group: str, raw: str | bytes) -> MaintenanceWindow | None:
    try:
        data = json.loads(raw)
        return MaintenanceWindow(str(data["id"]), group, int(data["startMs"]),
                                 int(data["endMs"]), str(data.get("reason", "")),
                                 str(data.get("createdBy", "")))
    except (ValueError, KeyError, TypeError):
        return None
