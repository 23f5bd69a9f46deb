"""Starting a rollout (its plan and device list into Redis) and reading its progress."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis

from providers.devices.channel_topics import DEVICE_ID
from providers.devices.ota.driver import RolloutError
from providers.devices.ota.plan import RolloutPlan
from providers.devices.ota.store import RolloutStore, counts

# The registry's group sets (providers/devices/registry_keys.py: ``{prefix}:group:{name}``).
REGISTRY_GROUP_PREFIX = "fleet:{devices}:group:"


async def group_members(redis: Redis, group: str, prefix: str = REGISTRY_GROUP_PREFIX
                        ) -> list[str]:
    """The group's device ids, sorted (the order is the plan: canary first)."""
    members = [m.decode() if isinstance(m, bytes) else str(m)
               async for m in redis.sscan_iter(f"{prefix}{group}", count=1000)]
    return sorted(m for m in members if DEVICE_ID.fullmatch(m))


async def start_rollout(redis: Redis, plan: RolloutPlan, *, now_s: float,
                        rollout_id: str | None = None,
                        devices: list[str] | None = None) -> tuple[str, int]:
    """(rollout id, device count); the devices default to the registry's group."""
    rollout_id = rollout_id or f"ota-{plan.group}-{uuid.uuid4().hex[:8]}"
    if DEVICE_ID.fullmatch(rollout_id) is None:
        raise RolloutError(f"rollout id {rollout_id[:80]!r}: expected letters, digits or '._:@-'")
    members = sorted(set(devices)) if devices is not None else await group_members(
        redis, plan.group)
    if not members:
        raise RolloutError(f"rollout {rollout_id}: group {plan.group} has no devices")
    if not await RolloutStore(redis, rollout_id).create(plan, members, now_s=now_s):
        raise RolloutError(f"rollout {rollout_id} exists already")
    return rollout_id, len(members)


async def rollout_status(redis: Redis, rollout_id: str) -> dict[str, Any]:
    """The stage, each stage's progress, and the device counts by state."""
    store = RolloutStore(redis, rollout_id)
    plan = await store.plan()
    if plan is None:
        raise RolloutError(f"rollout {rollout_id}: no such rollout")
    state = await store.state()
    tally = counts(await store.all_device_states())
    total, canary = int(state["devices"]), int(state["canary"])
    waves_total = -(-(total - canary) // plan.wave_size)
    return {
        "id": rollout_id, "stage": state.get("stage"), "group": plan.group,
        "version": plan.version, "devices": total,
        "canary": {"devices": canary, "percent": plan.canary_percent,
                   "unhealthy": int(state.get("canaryUnhealthy", 0))},
        "soak": {"seconds": plan.soak_s, "untilMs": int(state.get("soakUntilMs", 0)) or None},
        "waves": {"done": int(state.get("wave", 0)), "total": waves_total,
                  "size": plan.wave_size},
        "maxFailurePercent": plan.max_failure_percent,
        "states": tally, "pending": total - sum(tally.values()),
        "reason": state.get("reason"),
    }
