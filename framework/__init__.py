"""connector-fleet's library: the polling side (configuration, registry, lease,
state, polling loop) and the consuming side (consumer groups, rules, capabilities,
the signed catalog and its safe executor).

The names below are the public API; everything else may change. The consuming
side's names are imported on first use, so a polling process does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framework.clock import Clock, SystemClock
from framework.config import (
    ConnectorConfig,
    FleetConfig,
    RetryConfig,
    load_fleet_config,
    parse_provider_config,
)
from framework.errors import (
    ConfigError,
    ConnectorFleetError,
    LeaseLostError,
    MalformedResponseError,
    PermanentSourceError,
    RateLimitedError,
    RedisUnavailableError,
    SourceError,
    StateConflictError,
    TransientSourceError,
)
from framework.http import HttpClient, parse_json
from framework.lease import Lease
from framework.metrics import get_metrics, is_healthy
from framework.polling import (
    FetchResult,
    PageFetcher,
    PollingConnector,
    PollSummary,
    UniversalPollingConnector,
    content_version,
)
from framework.registry import ConnectorContext, ConnectorFactory, ConnectorRegistry
from framework.state import ConnectorState, StateStore

if TYPE_CHECKING:
    from framework.capabilities import CapabilityRegistry, RegistryExecutor
    from framework.capability import CallContext, CallPolicy, CallRequest, CapabilitySpec
    from framework.catalog import Catalog
    from framework.consumer import Consumer, ConsumerOptions
    from framework.delivery import Delivery, EventHandler
    from framework.rules import RuleSet, load_rules
    from framework.rules_handler import RulesHandler
    from framework.safe_executor import SafeExecutor

_CONSUMING_SIDE = {
    "CapabilityRegistry": "framework.capabilities",
    "RegistryExecutor": "framework.capabilities",
    "CallContext": "framework.capability",
    "CallPolicy": "framework.capability",
    "CallRequest": "framework.capability",
    "CapabilitySpec": "framework.capability",
    "Catalog": "framework.catalog",
    "Consumer": "framework.consumer",
    "ConsumerOptions": "framework.consumer",
    "Delivery": "framework.delivery",
    "EventHandler": "framework.delivery",
    "RuleSet": "framework.rules",
    "load_rules": "framework.rules",
    "RulesHandler": "framework.rules_handler",
    "SafeExecutor": "framework.safe_executor",
}


def __getattr__(name: str) -> Any:
    module = _CONSUMING_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module 'framework' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CallContext",
    "CallPolicy",
    "CallRequest",
    "CapabilityRegistry",
    "CapabilitySpec",
    "Catalog",
    "Clock",
    "ConfigError",
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorFactory",
    "ConnectorFleetError",
    "ConnectorRegistry",
    "ConnectorState",
    "Consumer",
    "ConsumerOptions",
    "Delivery",
    "EventHandler",
    "FetchResult",
    "FleetConfig",
    "HttpClient",
    "Lease",
    "LeaseLostError",
    "MalformedResponseError",
    "PageFetcher",
    "PermanentSourceError",
    "PollSummary",
    "PollingConnector",
    "RateLimitedError",
    "RedisUnavailableError",
    "RegistryExecutor",
    "RetryConfig",
    "RuleSet",
    "RulesHandler",
    "SafeExecutor",
    "SourceError",
    "StateConflictError",
    "StateStore",
    "SystemClock",
    "TransientSourceError",
    "UniversalPollingConnector",
    "content_version",
    "get_metrics",
    "is_healthy",
    "load_fleet_config",
    "load_rules",
    "parse_json",
    "parse_provider_config",
]
