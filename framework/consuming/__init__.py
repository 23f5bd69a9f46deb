"""The consuming side: Redis Streams into rules and capability calls.

The stream consumer (consumer groups, in-flight bound, reclaim, heartbeat, drain),
the consumer <-> handler contract, dead letters, event contracts, rules
(``rules/``) and capabilities (``capabilities/``: spec, registry, invoker,
breakers, the registry's executor). It imports the core only."""

from framework.consuming.capabilities.breaker import (
    BreakerBoard,
    read_breakers,
)
from framework.consuming.capabilities.executor import (
    ExecutionDeps,
    RegistryExecutor,
    build_executor,
)
from framework.consuming.capabilities.invocation import (
    CallMetrics,
)
from framework.consuming.capabilities.registry import (
    CapabilityRegistry,
)
from framework.consuming.capabilities.spec import (
    CallContext,
    CallPolicy,
    CallRequest,
    CapabilityExecutor,
    CapabilitySpec,
    ResourcePolicy,
    is_retryable,
)
from framework.consuming.consumer import (
    Consumer,
)
from framework.consuming.dead_letters import (
    DeadLetterStream,
)
from framework.consuming.delivery import (
    Delivery,
    EventHandler,
)
from framework.consuming.events import (
    BaseEventV1,
    describe_validation_error,
)
from framework.consuming.metrics import (
    ConsumerMetrics,
)
from framework.consuming.options import (
    ConsumerOptions,
    default_consumer_name,
)
from framework.consuming.pruning import (
    prune_idle_consumer,
)
from framework.consuming.retention import (
    RetentionMetrics,
    StreamRetention,
    Trimmed,
)
from framework.consuming.rules.absence import (
    DEFAULT_DEVICE_EVENTS_STREAM,
    HEARTBEAT_CAPABILITY,
    parse_duration_s,
)
from framework.consuming.rules.dry_run import (
    dry_run,
)
from framework.consuming.rules.handler import (
    RulesHandler,
)
from framework.consuming.rules.loader import (
    load_rules,
    parse_rules,
)
from framework.consuming.rules.model import (
    BranchStep,
    CallStep,
    RuleSet,
    Step,
)

__all__ = [
    "BaseEventV1",
    "BranchStep",
    "BreakerBoard",
    "CallContext",
    "CallMetrics",
    "CallPolicy",
    "DEFAULT_DEVICE_EVENTS_STREAM",
    "HEARTBEAT_CAPABILITY",
    "parse_duration_s",
    "CallRequest",
    "CallStep",
    "CapabilityExecutor",
    "CapabilityRegistry",
    "CapabilitySpec",
    "Consumer",
    "ConsumerMetrics",
    "ConsumerOptions",
    "DeadLetterStream",
    "Delivery",
    "EventHandler",
    "ExecutionDeps",
    "RegistryExecutor",
    "ResourcePolicy",
    "RetentionMetrics",
    "RuleSet",
    "RulesHandler",
    "Step",
    "StreamRetention",
    "Trimmed",
    "build_executor",
    "default_consumer_name",
    "describe_validation_error",
    "dry_run",
    "is_retryable",
    "load_rules",
    "parse_rules",
    "prune_idle_consumer",
    "read_breakers",
]
