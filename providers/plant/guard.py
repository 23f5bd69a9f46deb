"""What every plant command checks before it touches a device: the step's host
allow-list and the permit's fencing token."""

from __future__ import annotations

from redis.asyncio import Redis

from framework.consuming import CallContext, is_retryable
from framework.core import RefusedTargetError, StaleFencingTokenError, outside_deadline
from framework.trust import FencingGuard
from providers.plant.settings import Device


def allowed(device: Device, context: CallContext, capability: str) -> Device:
    """``device``, unless the step's ``allowHosts`` does not name its host."""
    if context.hosts is not None:
        reason = context.hosts.refuse_name(device.hostname, device.tcp_port)
        if reason is not None:
            raise RefusedTargetError(f"{capability}: {reason}")
    return device


async def fence(redis: Redis, target: str, fencing_token: int | None) -> None:
    """Refuse a permit holder whose token is older than one ``target`` accepted
    (no token: the call holds no permit, nothing to check)."""
    if fencing_token is not None:
        # Our Redis, not the device: a Redis stall is not the device's time.
        with outside_deadline():
            await FencingGuard(redis).accept(target, fencing_token)


def retryable(exc: BaseException) -> bool:
    # A stale token stays stale: a newer permit holder drives the actuator now.
    return is_retryable(exc) and not isinstance(exc, StaleFencingTokenError)
