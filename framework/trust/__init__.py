"""The trust side: what makes a capability call safe to run and to prove.

The signed catalog (``catalog/``: definitions, Ed25519, revocation, trusted keys),
resource permits with fencing (arbiter), the tamper-evident audit chain
(``audit/``) and the safe execution pipeline (``execution/``: catalog,
preconditions, permit, outcome and postcondition steps around the registry's
executor). It builds on the consuming side's
capabilities."""

from framework.trust.arbiter import (
    FencingGuard,
    ResourceArbiter,
)
from framework.trust.audit.archive import (
    AuditArchive,
    ExportSink,
    ExportSummary,
    TrimPlan,
)
from framework.trust.audit.chain import (
    AuditChain,
    AuditRecord,
    VerifyReport,
)
from framework.trust.audit.files import (
    ArchiveReport,
    verify_archive,
)
from framework.trust.catalog.signing import (
    PrivateKey,
    TrustStore,
    load_trust_store,
    trust_store_from_env,
)
from framework.trust.catalog.store import (
    Catalog,
    CatalogEntry,
    parse_definition,
)
from framework.trust.catalog.trusted_keys import (
    TrustReloader,
    TrustStoreSource,
)
from framework.trust.execution.metrics import (
    ExecutionMetrics,
)
from framework.trust.execution.pipeline import (
    TrustDeps,
    build_safe_executor,
)

__all__ = [
    "ArchiveReport",
    "AuditArchive",
    "AuditChain",
    "AuditRecord",
    "Catalog",
    "CatalogEntry",
    "ExecutionMetrics",
    "ExportSink",
    "ExportSummary",
    "FencingGuard",
    "PrivateKey",
    "ResourceArbiter",
    "TrimPlan",
    "TrustReloader",
    "TrustStore",
    "TrustDeps",
    "TrustStoreSource",
    "VerifyReport",
    "build_safe_executor",
    "load_trust_store",
    "parse_definition",
    "trust_store_from_env",
    "verify_archive",
]
