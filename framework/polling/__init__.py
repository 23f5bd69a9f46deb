"""The polling side: sources into Redis Streams.

Connector configuration and its registry of types, the fenced lease, the state and
the atomic publish + save (``lua/commit.lua``), the poller (fetch, diff,
transform, commit, paged), the HTTP client with its rate-limit transport, the
pagination of HTTP lists, the factory wiring of an HTTP source type, the push
connector for sources that deliver messages (brokers, receivers) with its
fenced append (``lua/append.lua``), and metrics.
It imports the core only."""

from framework.polling.append import (
    Appended,
    DedupeWindow,
    Message,
    Rejected,
)
from framework.polling.config import (
    DEFAULT_MAX_BODY_BYTES,
    ConnectorConfig,
    FleetConfig,
    RetryConfig,
    load_fleet_config,
    parse_provider_config,
)
from framework.polling.diff import encode_signal
from framework.polling.durability import (
    ReplicaAcks,
    ReplicasNotAckedError,
    check_acks,
)
from framework.polling.event_contract import (
    source_event,
)
from framework.polling.exchange import (
    read_limited,
)
from framework.polling.http import (
    HttpClient,
    describe_shape,
    parse_json,
    raise_for_status,
    read_json,
)
from framework.polling.http_source import (
    HttpSourceType,
    SourceWiring,
    http_connector_factory,
    network_transport,
)
from framework.polling.key_migration import (
    KeyMove,
    Migration,
    MigrationReport,
    MoveOutcome,
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
from framework.polling.pagination import (
    BodyPath,
    CursorParam,
    LinkHeader,
    NextLink,
    Offset,
    Page,
    PageNumber,
    PageRequest,
    Paginator,
    SinglePage,
    walk_pages,
)
from framework.polling.poller import (
    FetchResult,
    PageFetcher,
    PollingConnector,
    PollSummary,
    SourceParts,
    UniversalPollingConnector,
    content_version,
)
from framework.polling.push import (
    PUSH_WINDOW_S,
    Batch,
    PushConnector,
    PushingConnector,
    PushParts,
    PushSource,
)
from framework.polling.rate_limits import (
    RateLimitRules,
    RateLimitTransport,
)
from framework.polling.registry import (
    ConnectorContext,
    ConnectorFactory,
    ConnectorRegistry,
)
from framework.polling.slots import (
    check_one_slot,
    slots_of,
)
from framework.polling.state import (
    ConnectorState,
    StateStore,
)

__all__ = [
    "PUSH_WINDOW_S",
    "Appended",
    "Batch",
    "DedupeWindow",
    "Message",
    "PushConnector",
    "PushParts",
    "PushSource",
    "PushingConnector",
    "Rejected",
    "DEFAULT_MAX_BODY_BYTES",
    "BodyPath",
    "ConnectorConfig",
    "ConnectorContext",
    "ConnectorFactory",
    "ConnectorRegistry",
    "ConnectorState",
    "CursorParam",
    "FetchResult",
    "FleetConfig",
    "HttpClient",
    "HttpSourceType",
    "Lease",
    "ReplicaAcks",
    "ReplicasNotAckedError",
    "check_acks",
    "LinkHeader",
    "MetricsRecorder",
    "NextLink",
    "Offset",
    "Page",
    "PageFetcher",
    "PageNumber",
    "PageRequest",
    "Paginator",
    "PollSummary",
    "PollingConnector",
    "PrometheusMetrics",
    "RateLimitRules",
    "RateLimitTransport",
    "RetryConfig",
    "SinglePage",
    "SourceParts",
    "SourceWiring",
    "StateStore",
    "UniversalPollingConnector",
    "content_version",
    "describe_shape",
    "encode_signal",
    "get_metrics",
    "http_connector_factory",
    "is_healthy",
    "load_fleet_config",
    "network_transport",
    "parse_json",
    "parse_provider_config",
    "raise_for_status",
    "read_json",
    "read_limited",
    "read_lease",
    "walk_pages",
    "KeyMove",
    "Migration",
    "MigrationReport",
    "MoveOutcome",
    "check_one_slot",
    "slots_of",
    "source_event",
]
