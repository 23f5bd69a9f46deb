"""The escalation of one alarm, durable in Redis so that a crash does not restart it.

``fleet:alarm:{idempotency key}`` (a hash, kept 7 days) holds the level raised last
and when, and who acknowledged. Each level is published first and recorded next:
a crash between the two publishes that level again on the redelivery (the
device sees the same ``alarmId`` and ``level`` twice: at least once, never
lost); a crash after the record resumes where it was: the remaining time of the
level is waited, not a fresh one, and no level is published twice.

Devices acknowledge on the alarm's ack topic with a *retained* QoS 1 message, so an
acknowledgement sent while no consumer listened (between a crash and the
redelivery) is still there when the escalation resumes; it is cleared once recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import outside_deadline
from providers.alarm.bus import AlarmBus
from providers.alarm.params import AlarmParams, AlarmSettings

ALARM_PREFIX = "fleet:alarm:"
ALARM_TTL_S = 7 * 24 * 3600
# After subscribing, a retained acknowledgement is on its way: give it this long
# even when the level's time has already run out (a resumed escalation).
RETAINED_GRACE_S = 0.2


@dataclass(frozen=True)
class Escalation:
    """``level``: index of the level raised last (-1: none yet)."""

    level: int = -1
    raised_at_s: float = 0.0
    acked_by: str | None = None
    acked_user: str | None = None

    def as_state(self, alarm_id: str) -> dict[str, Any]:
        return {"alarmId": alarm_id, "raised": self.level >= 0, "level": self.level + 1,
                "acked": self.acked_by is not None, "ackedBy": self.acked_by}


class EscalationStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def load(self, key: str) -> Escalation:
        with outside_deadline():  # our Redis, not the broker: not the call's time
            raw = await self._redis.get(ALARM_PREFIX + key)
        return Escalation() if raw is None else Escalation(**orjson.loads(raw))

    async def save(self, key: str, escalation: Escalation) -> None:
        with outside_deadline():
            await self._redis.set(ALARM_PREFIX + key, orjson.dumps(asdict(escalation)),
                                  ex=ALARM_TTL_S)


class Escalator:
    """Runs one alarm's levels over one MQTT session."""

    def __init__(self, call: AlarmParams, settings: AlarmSettings, bus: AlarmBus,
                 context: CallContext) -> None:
        self.call = call
        self.settings = settings
        self.bus = bus
        self.context = context
        self.alarm_id = call.identity(context.idempotency_key)
        self.store = EscalationStore(context.redis)

    async def run(self) -> dict[str, Any]:
        key = self.context.idempotency_key
        state = await self.store.load(key)
        ack_topic = self.settings.ack_topic(self.alarm_id)
        await self.bus.subscribe(ack_topic)
        first_wait = True
        while state.acked_by is None:
            if state.level >= 0:
                level = self.call.levels[state.level]
                remaining = state.raised_at_s + level.ack_timeout_s - self.context.clock.time()
                ack = await self._wait_for_ack(
                    state, max(remaining, RETAINED_GRACE_S if first_wait else 0))
                first_wait = False
                if ack is not None:
                    state = replace(state, acked_by=ack[0], acked_user=ack[1])
                    await self.store.save(key, state)
                    await self.bus.publish(ack_topic, b"", retain=True)  # clear it
                    break
            if state.level + 1 == len(self.call.levels):
                break
            state = replace(state, level=state.level + 1, raised_at_s=self.context.clock.time())
            await self._publish_level(state.level, "raise")
            await self.store.save(key, state)
        return self._result(state)

    async def cancel(self) -> dict[str, Any]:
        devices = self.call.devices()
        for device in devices:
            await self.bus.publish(self.settings.alarm_topic(device),
                                   self._message(None, "cancel"))
        self.context.logger.info("alarm_cancelled", alarm_id=self.alarm_id, devices=devices)
        return {"alarmId": self.alarm_id, "cancelled": True, "devices": devices}

    async def _publish_level(self, index: int, operation: str) -> None:
        devices = self.call.levels[index].devices
        for device in devices:
            await self.bus.publish(self.settings.alarm_topic(device),
                                   self._message(index, operation))
        self.context.logger.info("alarm_raised", alarm_id=self.alarm_id, level=index + 1,
                                 devices=devices, severity=self.call.severity)

    def _message(self, index: int | None, operation: str) -> bytes:
        return orjson.dumps({
            "alarmId": self.alarm_id, "operation": operation, "kind": self.call.kind,
            "severity": self.call.severity, "message": self.call.message,
            "source": self.call.source, "level": None if index is None else index + 1,
            "ackTopic": self.settings.ack_topic(self.alarm_id),
            "at": datetime.fromtimestamp(self.context.clock.time(), UTC).isoformat()})

    async def _wait_for_ack(self, state: Escalation,
                            timeout_s: float) -> tuple[str, str | None] | None:
        """(device, user) of the first valid acknowledgement within ``timeout_s``."""
        allowed = set(self.call.devices(state.level))
        until = self.context.clock.monotonic() + timeout_s
        while True:
            raw = await self.bus.next_ack(until - self.context.clock.monotonic())
            if raw is None:
                return None
            ack, reason = _parse_ack(raw, self.alarm_id, allowed)
            if ack is not None:
                self.context.logger.info("alarm_acknowledged", alarm_id=self.alarm_id,
                                         device=ack[0], level=state.level + 1)
                return ack
            if raw:  # an empty payload is our own clearing of the retained ack
                self.context.logger.warning("alarm_ack_ignored", alarm_id=self.alarm_id,
                                            reason=reason)

    def _result(self, state: Escalation) -> dict[str, Any]:
        return {"alarmId": self.alarm_id, "acked": state.acked_by is not None,
                "ackedBy": state.acked_by, "by": state.acked_user, "level": state.level + 1,
                "levels": len(self.call.levels)}


def _parse_ack(raw: bytes, alarm_id: str,
               allowed: set[str]) -> tuple[tuple[str, str | None] | None, str]:
    try:
        ack = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(ack, dict):
        return None, "not a JSON object"
    if ack.get("alarmId") != alarm_id:
        return None, f"alarmId {str(ack.get('alarmId'))[:80]!r} is another alarm's"
    device = ack.get("device")
    if not isinstance(device, str) or device not in allowed:
        return None, (f"device {str(device)[:80]!r} was not alarmed (alarmed so far: "
                      f"{', '.join(sorted(allowed))})")
    user = ack.get("by")
    return (device, str(user)[:200] if user is not None else None), ""
