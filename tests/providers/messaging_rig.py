"""The safe pipeline around the messaging actions, for their tests: the signed
definition templates they ship, a catalog that trusts one fresh key, the audit chain
and the registry's invoker, on the test Redis. Calls go in as ``CallRequest``s, as a
rule step's do."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from framework.consuming import CallPolicy, CapabilityExecutor, CapabilityRegistry, CapabilitySpec
from framework.consuming.capabilities.breaker import BreakerPolicy
from framework.consuming.capabilities.spec import CallRequest
from framework.core import HostPolicy, SystemClock, get_logger
from framework.core.keys import ALERTS_STREAM
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.audit.links import AuditRecord
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from framework.trust.execution.pipeline import TrustDeps, build_safe_executor
from tests.execution_deps import execution_deps

PROVIDERS = Path(__file__).parent.parent.parent / "providers"
LOOPBACK = HostPolicy.of(["127.0.0.1"])

# Short waits: a retry after 10 ms, the breaker open after 3 failures for 60 s.
FAST_POLICY = CallPolicy(timeout_s=5.0, max_retries=2, backoff_base_s=0.01,
                         backoff_max_s=0.05,
                         breaker=BreakerPolicy(failure_threshold=3, window_s=60,
                                               cooldown_s=60))


def definition_path(system: str, capability: str, version: str = "1.0.0") -> Path:
    return PROVIDERS / system / "definitions" / f"{capability}_v{version}.json"


@dataclass
class Rig:
    redis: Redis
    executor: CapabilityExecutor

    async def call(self, capability: str, params: dict[str, Any], *,
                   key: str = "alerts:1-0:notify:send",
                   hosts: HostPolicy | None = LOOPBACK) -> Any:
        return await self.executor.execute(CallRequest(
            capability_id=capability, version_range="^1", params=params,
            idempotency_key=key, event={"stream": "alerts", "entry_id": "1-0"},
            rule="notify", step="send", hosts=hosts))

    async def audit(self) -> list[AuditRecord]:
        return [record async for record in AuditChain(self.redis).records()]

    async def kinds(self) -> list[str]:
        return [record.kind for record in await self.audit()]

    async def alerts(self) -> list[dict[str, Any]]:
        return [fields for _, fields in await self.redis.xrange(ALERTS_STREAM)]


async def safe_rig(redis: Redis, specs: list[CapabilitySpec], definitions: list[Path], *,
                   reschedule: bool = False) -> Rig:
    """``reschedule``: a failed attempt raises RetryLaterError with its delay, as
    under a stream consumer, instead of being retried in place."""
    registry = CapabilityRegistry()
    for spec in specs:
        registry.register(spec)
    key = PrivateKey.generate()
    deps = replace(execution_deps(redis, SystemClock()), reschedule_retries=reschedule)
    catalog = Catalog(redis, TrustStore([key.public()]), clock=deps.clock,
                      logger=get_logger(test="messaging-catalog"))
    for path in definitions:
        await catalog.register(parse_definition(path.read_bytes(), source=str(path))
                               .signed_with(key))
    executor = build_safe_executor(registry, deps, TrustDeps(
        catalog=catalog, audit=AuditChain(redis, clock=deps.clock), metrics=None,
        arbiter=ResourceArbiter(redis, clock=deps.clock, logger=deps.logger)))
    return Rig(redis, executor)
