"""Drives one OTA rollout: canary → soak (health analysis) → waves → done, or an
automatic rollback of every updated device. Each update and each rollback is a
``device.firmware_update`` call through the seven-step executor (signed catalog,
permit per device, postconditions, audit chain); the rollback decision itself is
appended to the audit chain too.

Everything the next step needs is in Redis (:mod:`providers.devices.ota.store`)
before the step runs, so a driver killed at any point is resumed by the next one
(``connector-fleet ota resume``): it skips what is done, asks again the devices that
were ``updating`` (the capability finds them on the new version and does not install
it twice), and sleeps only what is left of the soak. One driver per rollout at a
time (a lease that expires ``lease_ttl_s`` after a crash).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from framework.consuming import CallRequest, CapabilityExecutor
from framework.core import Clock, ConnectorFleetError, Logger, grow_pool
from framework.trust import AuditChain
from providers.devices.capabilities import FIRMWARE_UPDATE_ID
from providers.devices.ota.health import Probe, analyse_health
from providers.devices.ota.plan import RolloutPlan
from providers.devices.ota.store import FINAL_STAGES, RolloutStore


class RolloutError(ConnectorFleetError):
    """A rollout that does not exist, or is driven by another process right now."""


@dataclass(frozen=True)
class OtaDeps:
    redis: Redis
    executor: CapabilityExecutor
    probe: Probe
    clock: Clock
    logger: Logger
    audit: AuditChain | None = None
    lease_ttl_s: float = 30.0


class RolloutDriver:
    def __init__(self, deps: OtaDeps, rollout_id: str) -> None:
        self._deps = deps
        self._store = RolloutStore(deps.redis, rollout_id)
        self._id = rollout_id
        self._log = deps.logger.bind(rollout=rollout_id)

    async def run(self) -> str:
        """Drive the rollout to its end; its final stage (``done`` or ``rolled_back``)."""
        plan = await self._store.plan()
        if plan is None:
            raise RolloutError(f"rollout {self._id}: no such rollout")
        token = await self._store.acquire(self._deps.lease_ttl_s)
        if token is None:
            raise RolloutError(f"rollout {self._id}: another process drives it (its lease "
                               f"expires within {self._deps.lease_ttl_s:g} s of its end)")
        # Each device call in flight may hold a few connections at once (its permit's
        # renewal, its state, the audit chain): a pool of redis-py's default 100 would
        # fail calls at a concurrency of 200 (MaxConnectionsError).
        grow_pool(self._deps.redis, plan.concurrency * 3 + 16)
        driving = asyncio.create_task(self._drive(plan))
        renewing = asyncio.create_task(self._renew(token))
        try:
            await asyncio.wait({driving, renewing}, return_when=asyncio.FIRST_COMPLETED)
            if not driving.done():  # the lease was lost: another driver may run now
                raise RolloutError(f"rollout {self._id}: this process lost its lease; "
                                   "stopped between two device calls")
            return driving.result()
        finally:
            for task in (driving, renewing):
                task.cancel()
            await asyncio.gather(driving, renewing, return_exceptions=True)
            await self._store.release(token)

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(self._deps.lease_ttl_s / 3)
            if not await self._store.renew(token, self._deps.lease_ttl_s):
                self._log.error("ota_lease_lost")
                return

    async def _drive(self, plan: RolloutPlan) -> str:
        steps = {"canary": self._canary, "soak": self._soak, "waves": self._waves,
                 "rolling_back": self._roll_back}
        while True:
            stage = (await self._store.state()).get("stage", "canary")
            if stage in FINAL_STAGES:
                return stage
            self._log.info("ota_stage", stage=stage)
            await steps[stage](plan)

    # -- stages ------------------------------------------------------------------------

    async def _canary(self, plan: RolloutPlan) -> None:
        state = await self._store.state()
        if "eventsFrom" not in state:
            await self._store.update_state(eventsFrom=await self._stream_end(plan.events_stream))
        devices = await self._store.order(0, int(state["canary"]) - 1)
        failed = await self._update(plan, devices)
        if plan.too_many_failures(failed, len(devices)):
            await self._decide_rollback(f"canary: {failed} of {len(devices)} updates failed")
            return
        soak_until_ms = int((self._deps.clock.time() + plan.soak_s) * 1000)
        await self._store.update_state(stage="soak", soakUntilMs=soak_until_ms)

    async def _soak(self, plan: RolloutPlan) -> None:
        state = await self._store.state()
        remaining_s = int(state["soakUntilMs"]) / 1000 - self._deps.clock.time()
        if remaining_s > 0:
            await self._deps.clock.sleep(remaining_s)
        canary = await self._store.order(0, int(state["canary"]) - 1)
        statuses = await self._store.device_states(canary)
        updated = [d for d, s in zip(canary, statuses, strict=True) if s == "updated"]
        report = await analyse_health(
            self._deps.redis, updated, version=plan.version, events_stream=plan.events_stream,
            events_from=state["eventsFrom"], probe=self._deps.probe,
            concurrency=plan.concurrency)
        failed = report.failed + (len(canary) - len(updated))
        await self._store.update_state(canaryUnhealthy=report.failed)
        self._log.info("ota_canary_health", checked=report.checked, unhealthy=report.failed,
                       events_read=report.events_read,
                       reasons=dict(list(report.unhealthy.items())[:20]))
        if plan.too_many_failures(failed, len(canary)):
            reasons = "; ".join(f"{d}: {why}" for d, why in list(report.unhealthy.items())[:5])
            await self._decide_rollback(f"soak: {failed} of {len(canary)} canary devices "
                                        f"unhealthy ({reasons})")
            return
        await self._store.update_state(stage="waves")

    async def _waves(self, plan: RolloutPlan) -> None:
        state = await self._store.state()
        start = int(state["canary"]) + int(state["wave"]) * plan.wave_size
        if start >= int(state["devices"]):
            await self._store.update_state(stage="done", doneAtMs=self._now_ms())
            self._log.info("ota_done")
            return
        devices = await self._store.order(start, start + plan.wave_size - 1)
        failed = await self._update(plan, devices)
        if plan.too_many_failures(failed, len(devices)):
            await self._decide_rollback(f"wave {int(state['wave']) + 1}: {failed} of "
                                        f"{len(devices)} updates failed")
            return
        await self._store.update_state(wave=int(state["wave"]) + 1)

    async def _roll_back(self, plan: RolloutPlan) -> None:
        statuses = await self._store.all_device_states()
        todo = [d for d, s in statuses.items() if s in ("updating", "updated", "failed")]
        previous = await self._store.previous_versions(todo)
        for start in range(0, len(todo), plan.concurrency):
            chunk = todo[start:start + plan.concurrency]
            results = await asyncio.gather(*(
                self._restore(plan, device, previous.get(device)) for device in chunk))
            await self._store.mark({d: "rolled_back" if ok else "rollback_failed"
                                    for d, ok in zip(chunk, results, strict=True)})
        final = await self._store.all_device_states()
        failed = sorted(d for d, s in final.items() if s == "rollback_failed")
        await self._audit("ota_rolled_back", plan, rolledBack=sum(
            1 for s in final.values() if s == "rolled_back"), rollbackFailed=failed[:100])
        await self._store.update_state(stage="rolled_back", doneAtMs=self._now_ms())
        self._log.warning("ota_rolled_back", rollback_failed=len(failed))

    # -- devices -----------------------------------------------------------------------

    async def _restore(self, plan: RolloutPlan, device_id: str, previous: str | None) -> bool:
        """Put the device back on the version it ran before; True when it is there.
        Unknown (its update failed or its result was lost in a crash): asked."""
        if previous is None:
            state = await self._deps.probe(device_id)
            if state is None:
                return False
            if state.get("firmware_version") != plan.version:
                return True  # never left its firmware, or the executor's rollback ran
            previous = state.get("previous_version")
            if not isinstance(previous, str):
                return False
        done, _ = await self._call(plan, device_id, previous, step="rollback")
        return done

    async def _update(self, plan: RolloutPlan, devices: Sequence[str]) -> int:
        """Update what is not done yet, ``concurrency`` at a time; how many failed
        among ``devices`` (this run's and earlier runs')."""
        statuses = await self._store.device_states(devices)
        todo = [d for d, s in zip(devices, statuses, strict=True) if s in (None, "updating")]
        for start in range(0, len(todo), plan.concurrency):
            chunk = todo[start:start + plan.concurrency]
            await self._store.mark(dict.fromkeys(chunk, "updating"))  # write-ahead
            results = await asyncio.gather(*(self._call(plan, d, plan.version, step="update")
                                             for d in chunk))
            await self._store.mark(
                {d: "updated" if ok else "failed" for d, (ok, _) in zip(chunk, results,
                                                                         strict=True)},
                previous={d: before for d, (ok, before) in zip(chunk, results, strict=True)
                          if ok and before})
        final = await self._store.device_states(devices)
        return sum(1 for state in final if state == "failed")

    async def _call(self, plan: RolloutPlan, device_id: str, version: str, *,
                    step: str) -> tuple[bool, str | None]:
        """(done?, the version before) of one update or rollback through the executor."""
        params: dict[str, Any] = {"deviceId": device_id, "version": version,
                                  "timeoutS": plan.device_timeout_s}
        if step == "update":
            params["manifest"] = plan.firmware.to_json()
        try:
            result = await self._deps.executor.execute(CallRequest(
                capability_id=FIRMWARE_UPDATE_ID, version_range="^1.2", params=params,
                idempotency_key=f"ota:{self._id}:{device_id}:{step}",
                event={"stream": "ota", "entry_id": self._id, "rolloutId": self._id},
                rule=f"ota:{self._id}", step=step))
        except Exception as exc:  # one device's failure never stops the others
            self._log.warning("ota_device_failed", device_id=device_id, step=step,
                              error=f"{type(exc).__name__}: {exc}"[:500])
            return False, None
        if isinstance(result, Mapping) and result.get("executed") is False:
            return False, None  # a precondition refused it (the device does not answer)
        before = result.get("previous_version") if isinstance(result, Mapping) else None
        return True, before if isinstance(before, str) else None

    # -- helpers -----------------------------------------------------------------------

    async def _decide_rollback(self, reason: str) -> None:
        self._log.warning("ota_rollback_decided", reason=reason)
        plan = await self._store.plan()
        if plan is not None:
            await self._audit("ota_rollback_decided", plan, reason=reason)
        await self._store.update_state(stage="rolling_back", reason=reason)

    async def _audit(self, kind: str, plan: RolloutPlan, **fields: Any) -> None:
        if self._deps.audit is not None:
            await self._deps.audit.append(kind, {"rollout": self._id, "group": plan.group,
                                                 "version": plan.version, **fields})

    async def _stream_end(self, stream: str) -> str:
        last = await self._deps.redis.xrevrange(stream, count=1)
        if not last:
            return "0-0"
        entry_id = last[0][0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def _now_ms(self) -> int:
        return int(self._deps.clock.time() * 1000)
