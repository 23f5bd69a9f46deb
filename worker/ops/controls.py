"""Operator controls of a connector, shared by the control API (which sets them) and
the connector worker (which honours them).

``fleet:control:{name}`` (hash) is the durable part: ``paused`` (JSON by, at,
reason) while the connector is paused, ``lastError`` (JSON at, error, type) the
last failed poll. Every replica's worker reads ``paused`` before each poll, so a
pause holds within one poll interval everywhere, across restarts and failovers.
``fleet:control`` (channel) carries ``{"connector", "action"}`` messages that wake
the worker at once: ``poll_now``, ``restart``, ``pause``, ``resume``. A lost message
costs only promptness (the flag is what counts; a missed ``poll_now`` waits for the
next scheduled poll)."""

from __future__ import annotations

from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis

from framework.core import CONTROL_CHANNEL, control_key, iso_utc

Action = Literal["poll_now", "restart", "pause", "resume"]
ACTIONS: tuple[Action, ...] = ("poll_now", "restart", "pause", "resume")


async def set_paused(redis: Redis, name: str, *, by: str, reason: str, at_s: float) -> None:
    flag = orjson.dumps({"by": by, "reason": reason, "at": iso_utc(at_s)}).decode()
    await redis.hset(control_key(name), "paused", flag)
    await announce(redis, name, "pause")


async def clear_paused(redis: Redis, name: str) -> bool:
    """Resume; False if it was not paused."""
    removed = int(await redis.hdel(control_key(name), "paused"))
    await announce(redis, name, "resume")
    return removed > 0


async def announce(redis: Redis, name: str, action: Action) -> int:
    """Wake the connector's workers; how many processes heard it."""
    return int(await redis.publish(CONTROL_CHANNEL,
                                   orjson.dumps({"connector": name, "action": action})))


async def read_controls(redis: Redis, name: str) -> dict[str, Any]:
    """``{"paused": {...} | None, "lastError": {...} | None}``."""
    raw = cast(list[str | None], await redis.hmget(control_key(name), ["paused", "lastError"]))
    return {"paused": _json_or_none(raw[0]), "lastError": _json_or_none(raw[1])}


async def record_last_error(redis: Redis, name: str, *, error: str, error_type: str,
                            at_s: float) -> None:
    value = orjson.dumps({"at": iso_utc(at_s), "error": error[:2000], "type": error_type})
    await redis.hset(control_key(name), "lastError", value.decode())


def parse_announcement(data: object) -> tuple[str, Action] | None:
    """``(connector, action)`` of a channel message; None for anything else."""
    try:
        message = orjson.loads(data if isinstance(data, (bytes, str)) else b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    name, action = message.get("connector"), message.get("action")
    if isinstance(name, str) and action in ACTIONS:
        return name, cast(Action, action)
    return None


def _json_or_none(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"unreadable": raw[:200]}
