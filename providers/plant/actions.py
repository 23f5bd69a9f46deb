"""The plant's capabilities over one configuration, and the background work they
need in every consumer process (the irrigation close sweeper)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis

from framework.consuming import CapabilitySpec
from framework.core import Clock, Logger
from framework.trust import AuditChain
from providers.plant.irrigation import Zones, irrigation_control_spec
from providers.plant.pump import pump_control_spec
from providers.plant.settings import PlantSettings
from providers.plant.sweeper import CloseSweeper


class PlantActions:
    def __init__(self, settings: PlantSettings) -> None:
        self.settings = settings

    def specs(self) -> list[CapabilitySpec]:
        return [pump_control_spec(self.settings), irrigation_control_spec(self.settings)]

    def sweeper(self, redis: Redis, *, clock: Clock, logger: Logger,
                audit: AuditChain | None = None) -> CloseSweeper:
        return CloseSweeper(Zones(self.settings), redis, clock=clock,
                            logger=logger.bind(component="irrigation-sweeper"),
                            interval_ms=self.settings.sweep_interval_ms,
                            lease_ms=self.settings.close_lease_ms, audit=audit)

    def background(self, redis: Redis, *, clock: Clock, logger: Logger,
                   audit: AuditChain | None = None) -> list[Coroutine[Any, Any, None]]:
        """What a consumer process runs beside its consumer: the close sweeper, when
        zones are configured (none otherwise: no Redis polling for nothing); its
        closes recorded in ``audit`` when the process keeps a chain."""
        if not self.settings.zones:
            return []
        return [self.sweeper(redis, clock=clock, logger=logger, audit=audit).run()]
