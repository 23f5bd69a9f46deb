"""The safe pipeline, composed once at start-up: each step a
:class:`~framework.consuming.capabilities.spec.CapabilityExecutor` holding the next::

    catalog -> preconditions -> permit -> preconditions (again, under the permit)
      -> outcome (audit, rollback, alert) -> postconditions -> RegistryExecutor

The registry's executor is innermost: it resolves the handler the signed definition
names, builds the call's context and invokes it (timeout, retries, breaker) on the
process's :class:`ExecutionDeps`, the same ones the unsigned executor gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from framework.consuming.capabilities.executor import ExecutionDeps, RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CapabilityExecutor, ResourcePolicy
from framework.core.keys import ALERTS_STREAM
from framework.trust.arbiter import ResourceArbiter
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.store import Catalog
from framework.trust.execution.alerts import AlertStream
from framework.trust.execution.catalog_step import CatalogStep
from framework.trust.execution.metrics import ExecutionMetrics
from framework.trust.execution.outcome import OutcomeStep
from framework.trust.execution.permit import PermitStep
from framework.trust.execution.postconditions import PostconditionStep
from framework.trust.execution.preconditions import PreconditionStep
from framework.trust.execution.rollback import Rollback
from framework.trust.execution.state import StateReader


@dataclass(frozen=True)
class TrustDeps:
    """What the safe pipeline adds to :class:`ExecutionDeps`, created by the process."""

    catalog: Catalog
    audit: AuditChain
    arbiter: ResourceArbiter
    # None: the pipeline's counters are not kept.
    metrics: ExecutionMetrics | None
    # The resource policy by capability id, over what a capability declares.
    resources: Mapping[str, ResourcePolicy] = field(default_factory=dict)
    alerts_stream: str = ALERTS_STREAM


def build_safe_executor(registry: CapabilityRegistry, deps: ExecutionDeps,
                        trust: TrustDeps) -> CapabilityExecutor:
    """The signed catalog's executor over ``registry``'s capabilities."""
    invoker = RegistryExecutor(registry, deps)
    state = StateReader(deps)
    # A rollback runs to its end now (its retries in place): no redelivery would resume it.
    undo = RegistryExecutor(registry, replace(deps, reschedule_retries=False))
    rollback = Rollback(trust.catalog, undo, trust.audit, deps.logger)
    alerts = AlertStream(deps.redis, deps.clock, trust.alerts_stream)
    acting = OutcomeStep(trust.audit, state, rollback, alerts, trust.metrics, deps.clock,
                         PostconditionStep(state, deps.clock, invoker))
    permitted = PermitStep(trust.arbiter, trust.resources, trust.audit,
                           PreconditionStep(state, trust.audit, trust.metrics, acting))
    checked = PreconditionStep(state, trust.audit, trust.metrics, permitted)
    return CatalogStep(trust.catalog, registry, trust.audit, deps.logger, checked)
