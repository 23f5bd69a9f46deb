"""The polling side: sources into Redis Streams.

Connector configuration and its registry of types, the fenced lease, the state and
the atomic publish + save (``lua/commit.lua``), the poller (fetch, diff,
transform, commit, paged), the HTTP client, and metrics. It imports the core
only."""

from framework.polling.config import (
    ConnectorConfig,
    FleetConfig,
    RetryConfig,
    load_fleet_config,
    parse_provider_config,
)
from framework.polling.http import (
    HttpClient,
    parse_json,
    raise_for_status,
)
from framework.polling.lease import (
    Lease,
    read_lease,
)
from framework.polling.metrics import (
    MetricsRecorder,
    PrometheusMetrics,
    get_metrics,
    is_healthy,
)
from framework.polling.poller import (
    FetchResult,
    PageFetcher,
    PollingConnector,
    PollSummary,
    UniversalPollingConnector,
    content_version,
    encode_signal,
)
from framework.polling.registry import (
    ConnectorContext,
    ConnectorFactory,
    ConnectorRegistry,
)
from framework.polling.state import (
    ConnectorState,
    StateStore,
)

__all__ = [
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorFactory",
    "ConnectorRegistry",
    "ConnectorState",
    "FetchResult",
    "FleetConfig",
    "HttpClient",
    "Lease",
    "MetricsRecorder",
    "PageFetcher",
    "PollSummary",
    "PollingConnector",
    "PrometheusMetrics",
    "RetryConfig",
    "StateStore",
    "UniversalPollingConnector",
    "content_version",
    "encode_signal",
    "get_metrics",
    "is_healthy",
    "load_fleet_config",
    "parse_json",
    "parse_provider_config",
    "raise_for_status",
    "read_lease",
]
