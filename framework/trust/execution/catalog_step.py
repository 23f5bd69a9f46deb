"""The catalog step: resolve the capability in the signed catalog (verified, not
revoked) and its handler in the registry; a refusal is audited and dead-lettered."""

from __future__ import annotations

from typing import Any

from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core.errors import CatalogError, DeadLetterError, UnknownCapabilityError
from framework.core.logs import Logger
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.store import Catalog
from framework.trust.execution.call import VerifiedCall


class CatalogStep:
    """Passes a :class:`VerifiedCall` on; records ``refused`` for an unknown, revoked,
    unsigned, tampered or untrusted capability and raises :class:`DeadLetterError`."""

    def __init__(self, catalog: Catalog, registry: CapabilityRegistry, audit: AuditChain,
                 logger: Logger, next_step: CapabilityExecutor) -> None:
        self._catalog = catalog
        self._registry = registry
        self._audit = audit
        self._logger = logger
        self._next = next_step

    async def execute(self, request: CallRequest) -> Any:
        return await self._next.execute(await self._verify(request))

    async def _verify(self, request: CallRequest) -> VerifiedCall:
        try:
            found = await self._catalog.resolve(request.capability_id, request.version_range)
            spec = self._registry.lookup(found.definition.handler)
        except (CatalogError, UnknownCapabilityError) as exc:  # the latter: registry misses
            await self._refuse(request, exc)
            raise DeadLetterError(str(exc), rule=request.rule, step=request.step) from exc
        return VerifiedCall.of(request, found.definition, found.key_id, spec)

    async def _refuse(self, request: CallRequest, exc: Exception) -> None:
        await self._audit.append("refused", {
            "capability": request.capability_id, "versionRange": request.version_range,
            "rule": request.rule, "step": request.step,
            "idempotencyKey": request.idempotency_key, "reason": str(exc),
            "error": type(exc).__name__})
        self._logger.warning("capability_refused", capability=request.capability_id,
                             rule=request.rule, step=request.step, reason=str(exc))
