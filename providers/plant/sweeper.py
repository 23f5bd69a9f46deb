"""The sweeper every consumer process runs when zones are configured: it claims the
irrigation closes that are due (under a lease, atomically: one sweeper per close)
and closes the valves. A close that fails (device gone) stays claimed until its
lease ends and is then tried again, by this sweeper or another; one failing zone
never holds up the others.

Each close is made under the zone's resource permit (``zone:{zoneId}``, the one the
signed pipeline holds for ``irrigation_control``) with its fencing token: an open
in progress finishes first, and a close whose zone was opened again meanwhile (its
score moved) is left to that open's own close.
"""

from __future__ import annotations

import asyncio

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.core import Clock, ConnectorFleetError, Logger
from framework.trust import ResourceArbiter
from providers.plant.irrigation import IRRIGATION_RESOURCE, Zones
from providers.plant.schedule import Claim, CloseSchedule


class CloseSweeper:
    def __init__(self, zones: Zones, redis: Redis, *, clock: Clock, logger: Logger,
                 interval_ms: int, lease_ms: int) -> None:
        self._zones = zones
        self._schedule = CloseSchedule(redis)
        self._redis = redis
        self._clock = clock
        self._log = logger
        self._interval_s = interval_ms / 1000
        self._lease_ms = lease_ms
        self._arbiter = ResourceArbiter(redis, clock=clock, logger=logger)

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
        try:
            # Half the lease at most: the close must be done before another may claim it.
            async with self._arbiter.permit(resource,
                                            wait_timeout_s=self._lease_ms / 2000) as permit:
                if await self._schedule.due_ms(claim.zone_id) != claim.lease_ms:
                    self._log.info("irrigation_close_superseded", zone=claim.zone_id,
                                   due_ms=claim.due_ms)
                    return False
                await self._zones.close_due(claim.zone_id, self._redis, permit.fencing_token)
        except (ConnectorFleetError, ValueError, OSError) as exc:
            self._log.error("irrigation_close_failed", zone=claim.zone_id, due_ms=claim.due_ms,
                            retry_at_ms=claim.lease_ms, error=str(exc))
            return False
        except Exception as exc:  # isolated: the other zones are closed all the same
            self._log.exception("irrigation_close_failed", zone=claim.zone_id,
                                due_ms=claim.due_ms, retry_at_ms=claim.lease_ms,
                                error=f"{type(exc).__name__}: {exc}")
            return False
        removed = await self._schedule.done(claim)
        # Claimed at lease - lease_ms on the Redis clock: how late the sweep found it.
        claimed_late_ms = claim.lease_ms - self._lease_ms - claim.due_ms
        self._log.info("irrigation_closed", zone=claim.zone_id, due_ms=claim.due_ms,
                       claimed_late_ms=claimed_late_ms, rescheduled_meanwhile=not removed)
        return True
