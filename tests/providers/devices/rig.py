"""The safe pipeline around the device capabilities, for their tests: the signed
definitions they ship (postcondition waits shortened where a test waits for them to
fail), a firmware key, the simulator on a real Mosquitto."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from framework.consuming import CapabilityExecutor, CapabilityRegistry
from framework.consuming.capabilities.spec import CallRequest
from framework.core import SystemClock, get_logger
from framework.core.keys import ALERTS_STREAM
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.audit.links import AuditRecord
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from providers.devices import DeviceBroker
from providers.devices.capabilities import DeviceActions, FirmwareManifest
from tests.execution_deps import execution_deps

DEFINITIONS = (Path(__file__).parent.parent.parent.parent / "providers" / "devices"
               / "capabilities" / "definitions")


def definition(name: str, *, fast: bool) -> dict[str, Any]:
    """The shipped definition; ``fast``: its postcondition waits cut to 1.5 s."""
    document: dict[str, Any] = json.loads((DEFINITIONS / name).read_text())
    if fast:
        for condition in document["postconditions"]:
            condition["timeoutMs"], condition["pollIntervalMs"] = 1500, 100
    return document


def manifest(version: str, key: PrivateKey) -> dict[str, Any]:
    image = f"firmware image {version}".encode()
    return FirmwareManifest.model_validate({
        "version": version, "url": f"https://firmware.example.com/meter-{version}.bin",
        "sha256": hashlib.sha256(image).hexdigest(), "sizeBytes": len(image),
    }).signed_with(key).to_json()


@dataclass
class DeviceRig:
    redis: Redis
    executor: CapabilityExecutor
    actions: DeviceActions

    async def call(self, capability: str, params: dict[str, Any], *, key: str = "1-0") -> Any:
        return await self.executor.execute(CallRequest(
            capability_id=capability, version_range="^1", params=params,
            idempotency_key=f"devices:{key}:ota:update", event={"stream": "devices",
                                                                "entry_id": key},
            rule="ota", step="update"))

    async def audit(self) -> list[AuditRecord]:
        return [record async for record in AuditChain(self.redis).records()]

    async def kinds(self) -> list[str]:
        return [record.kind for record in await self.audit()]

    async def alerts(self) -> list[dict[str, Any]]:
        return [fields for _, fields in await self.redis.xrange(ALERTS_STREAM)]


async def device_rig(redis: Redis, broker: DeviceBroker, firmware_key: PrivateKey, *,
                     fast: bool = True, state_timeout_s: float = 5.0) -> DeviceRig:
    actions = DeviceActions(lambda: broker, lambda: TrustStore([firmware_key.public()]),
                            state_timeout_s=state_timeout_s)
    registry = CapabilityRegistry()
    for spec in actions.specs():
        registry.register(spec)
    catalog_key = PrivateKey.generate()
    deps = execution_deps(redis, SystemClock())
    catalog = Catalog(redis, TrustStore([catalog_key.public()]), clock=deps.clock,
                      logger=get_logger(test="devices-catalog"))
    for name in ("device.firmware_update_v1.2.0.json", "device.reboot_v1.0.0.json"):
        document = definition(name, fast=fast)
        await catalog.register(parse_definition(document, source=name).signed_with(catalog_key))
    executor = build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))
    return DeviceRig(redis, executor, actions)
