"""The safe pipeline's metrics (``connector_call_duration_ms`` is the invoker's
:class:`~framework.consuming.capabilities.invocation.CallMetrics`)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from framework.trust.arbiter import permit_wait_histogram
from framework.trust.catalog.store import Catalog


@dataclass(frozen=True)
class ExecutionMetrics:
    precondition_failures: Counter
    rollbacks: Counter
    # For the process's ResourceArbiter.
    permit_wait: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, *,
               catalog: Catalog | None = None) -> ExecutionMetrics:
        if catalog is not None:
            Gauge("connector_revocations_applied",
                  "Catalog revocations this process applied (pub/sub).",
                  registry=registry).set_function(lambda: catalog.revocations_applied)
        return cls(
            precondition_failures=Counter(
                "connector_precondition_failures", "Steps not executed: a precondition "
                "was false.", ["capability_id", "condition"], registry=registry),
            rollbacks=Counter(
                "connector_rollback_count", "Failed executions by rollback strategy "
                "(none, revert, compensate).", ["capability_id", "strategy"],
                registry=registry),
            permit_wait=permit_wait_histogram(registry),
        )
