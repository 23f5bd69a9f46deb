"""The sweeper every consumer process runs when zones are configured: it claims the
irrigation closes that are due (under a lease, atomically: one sweeper per close)
and closes the valves. A close that fails (device gone) stays claimed until its
lease ends and is then tried again, by this sweeper or another; one failing zone
never holds up the others.

Each close is made under the zone's resource permit (``zone:{zoneId}``, the one the
signed pipeline holds for ``irrigation_control``) with its fencing token: an open
in progress finishes first, and a close whose zone was opened again meanwhile (its
score moved) is left to that open's own close. A permit still taken after half the
lease (a consumer killed mid-step keeps it until its TTL) does not hold back a due
close: it is made without it (``irrigation_close_forced``).
"""

from __future__ import annotations

import asyncio

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core import Clock, ConnectorFleetError, Logger, PermitTimeoutError
from framework.trust import AuditChain, ResourceArbiter
from providers.plant.irrigation import (
    IRRIGATION_CONTROL_ID,
    IRRIGATION_CONTROL_VERSION,
    IRRIGATION_RESOURCE,
    Zones,
)
from providers.plant.schedule import Claim, CloseSchedule


class CloseSweeper:
    def __init__(self, zones: Zones, redis: Redis, *, clock: Clock, logger: Logger,
                 interval_ms: int, lease_ms: int, audit: AuditChain | None = None) -> None:
        """``audit``: the process's chain (with a signed catalog), where each close is
        recorded as ``scheduled_close``; None: logged only."""
        self._zones = zones
        self._schedule = CloseSchedule(redis)
        self._redis = redis
        self._clock = clock
        self._log = logger
        self._interval_s = interval_ms / 1000
        self._lease_ms = lease_ms
        self._arbiter = ResourceArbiter(redis, clock=clock, logger=logger)
        self._audit = audit

    async def sweep_once(self) -> int:
        """Close every due zone this sweeper claims; how many were closed."""
        claims = await self._schedule.claim_due(lease_ms=self._lease_ms)
        results = await asyncio.gather(*(self._close(claim) for claim in claims))
        return sum(results)

    async def run(self) -> None:
        """Sweep every ``interval_ms`` until cancelled; Redis trouble is logged."""
        while True:
            try:
                await self.sweep_once()
            except (redis_errors.RedisError, OSError) as exc:
                self._log.warning("irrigation_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a bug must not end the sweeping: closes are due
                self._log.exception("irrigation_sweep_failed",
                                    error=f"{type(exc).__name__}: {exc}")
            await self._clock.sleep(self._interval_s)

    async def _close(self, claim: Claim) -> bool:
        resource = IRRIGATION_RESOURCE.resource_for({"zoneId": claim.zone_id})
        token: int | None = None
        try:
            try:
                # Half the lease at most: done before another sweeper may claim it.
                async with self._arbiter.permit(resource,
                                                wait_timeout_s=self._lease_ms / 2000) as permit:
                    token = permit.fencing_token
                    return await self._close_claimed(claim, token)
            except PermitTimeoutError:
                # A step holds the zone past the wait: maybe one whose consumer died and
                # whose permit outlives it until its TTL. The close is due: safety first.
                self._log.warning("irrigation_close_forced", zone=claim.zone_id,
                                  due_ms=claim.due_ms, reason="the zone's permit stayed taken")
                return await self._close_claimed(claim, None)
        except (ConnectorFleetError, ValueError, OSError) as exc:
            self._log.error("irrigation_close_failed", zone=claim.zone_id, due_ms=claim.due_ms,
                            retry_at_ms=claim.lease_ms, error=str(exc))
            await self._record(claim, token, error=str(exc))
            return False
        except Exception as exc:  # isolated: the other zones are closed all the same
            self._log.exception("irrigation_close_failed", zone=claim.zone_id,
                                due_ms=claim.due_ms, retry_at_ms=claim.lease_ms,
                                error=f"{type(exc).__name__}: {exc}")
            await self._record(claim, token, error=f"{type(exc).__name__}: {exc}")
            return False

    async def _close_claimed(self, claim: Claim, token: int | None) -> bool:
        if await self._schedule.due_ms(claim.zone_id) != claim.lease_ms:
            self._log.info("irrigation_close_superseded", zone=claim.zone_id,
                           due_ms=claim.due_ms)
            return False
        await self._zones.close_due(claim.zone_id, self._redis, token)
        removed = await self._schedule.done(claim)
        self._log.info("irrigation_closed", zone=claim.zone_id, due_ms=claim.due_ms,
                       claimed_late_ms=self._late_ms(claim), rescheduled_meanwhile=not removed,
                       forced=token is None)
        await self._record(claim, token, error=None)
        return True

    def _late_ms(self, claim: Claim) -> int:
        # Claimed at lease - lease_ms on the Redis clock: how late the sweep found it.
        return claim.lease_ms - self._lease_ms - claim.due_ms

    async def _record(self, claim: Claim, token: int | None, *, error: str | None) -> None:
        """The close in the audit chain, when the process keeps one; a chain that
        cannot be written is logged: the valve's state matters more than its record."""
        if self._audit is None:
            return
        try:
            await self._audit.append("scheduled_close", {
                "capability": IRRIGATION_CONTROL_ID, "version": IRRIGATION_CONTROL_VERSION,
                "zoneId": claim.zone_id, "dueMs": claim.due_ms,
                "claimedLateMs": self._late_ms(claim), "fencingToken": token,
                "ok": error is None, "error": error})
        except (ConnectorFleetError, redis_errors.RedisError, OSError) as exc:
            self._log.error("irrigation_close_unaudited", zone=claim.zone_id, error=str(exc))
