"""Every device capability (firmware, reboot and the others) behind the safe
pipeline, with every shipped definition signed into the catalog (postcondition
waits cut to 1.5 s), the simulator on a real Mosquitto."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from framework.consuming import CapabilityRegistry
from framework.consuming.capabilities.spec import CallRequest
from framework.core import HostPolicy, SystemClock, get_logger
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.devices import DeviceBroker
from providers.devices.capabilities import (
    DeviceActions,
    DeviceCapabilityDeps,
    LocalGpio,
    device_capability_specs,
)
from providers.http.guarded_client import GuardedClient
from tests.execution_deps import execution_deps
from tests.providers.devices.rig import DEFINITIONS, DeviceRig, definition

STATE_TIMEOUT_S = 1.0


@dataclass
class CapsRig(DeviceRig):
    client: GuardedClient | None = None
    _keys: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self, capability: str, params: dict[str, Any], *,
                  hosts: HostPolicy | None = None) -> Any:
        """One call through the seven steps, as a rule step with its own entry."""
        entry = f"1-{next(self._keys)}"
        return await self.executor.execute(CallRequest(
            capability_id=capability, version_range="^1", params=params,
            idempotency_key=f"devices:{entry}:caps:{capability}",
            event={"stream": "devices", "entry_id": entry}, rule="caps", step=capability,
            hosts=hosts))

    async def close(self) -> None:
        await self.actions.aclose()
        if self.client is not None:
            await self.client.aclose()


async def caps_rig(redis: Redis, broker: DeviceBroker, *, gpio: LocalGpio | None = None,
                   streams: tuple[str, ...] = ("raw-input-signals",)) -> CapsRig:
    actions = DeviceActions(lambda: broker, lambda: TrustStore([]),
                            state_timeout_s=STATE_TIMEOUT_S)
    client = GuardedClient()
    registry = CapabilityRegistry()
    for spec in [*actions.specs(), *device_capability_specs(DeviceCapabilityDeps(
            actions, client, gpio=gpio or LocalGpio(()), telemetry_streams=streams,
            state_timeout_s=STATE_TIMEOUT_S))]:
        registry.register(spec)
    catalog_key = PrivateKey.generate()
    deps = execution_deps(redis, SystemClock())
    catalog = Catalog(redis, TrustStore([catalog_key.public()]), clock=deps.clock,
                      logger=get_logger(test="device-caps-catalog"))
    for path in sorted(DEFINITIONS.glob("*.json")):
        document = definition(path.name, fast=True)
        await catalog.register(parse_definition(document, source=path.name)
                               .signed_with(catalog_key))
    executor = build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))
    return CapsRig(redis, executor, actions, client=client)
