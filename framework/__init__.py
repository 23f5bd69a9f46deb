"""connector-fleet's library: configuration, registry, lease, state, polling loop.

The names below are the public API; everything else may change.
"""

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
    PollingConnector,
    PollSummary,
    UniversalPollingConnector,
    content_version,
)
from framework.registry import ConnectorContext, ConnectorFactory, ConnectorRegistry
from framework.state import ConnectorState, StateStore

__all__ = [
    "Clock",
    "ConfigError",
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorFactory",
    "ConnectorFleetError",
    "ConnectorRegistry",
    "ConnectorState",
    "FetchResult",
    "FleetConfig",
    "HttpClient",
    "Lease",
    "LeaseLostError",
    "MalformedResponseError",
    "PermanentSourceError",
    "PollSummary",
    "PollingConnector",
    "RateLimitedError",
    "RedisUnavailableError",
    "RetryConfig",
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
    "parse_json",
    "parse_provider_config",
]
