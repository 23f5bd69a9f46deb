"""What every side shares: the clock, Redis keys and connections (and the embedded
redis-server), Lua loading, structured logs, secret redaction, ``${VAR}``
substitution, process settings, the exception tree, cancellation, deadline
timers, the pub/sub watch, safe expressions and versions.

The core imports no side."""

from framework.core.cancellation import (
    cancel_and_wait,
)
from framework.core.channel_watch import (
    ChannelWatch,
)
from framework.core.clock import (
    Clock,
    SystemClock,
    iso_utc,
)
from framework.core.connections import (
    UNAVAILABLE,
    create_redis,
    create_sync_redis,
    grow_pool,
    is_out_of_memory,
    pool_size_for,
    redis_failures,
)
from framework.core.deadlines import (
    Deadlines,
    outside_deadline,
)
from framework.core.embedded_redis import (
    EmbeddedRedis,
    redis_answers,
)
from framework.core.errors import (
    AuditTrimError,
    CatalogError,
    ConfigError,
    ConnectorFleetError,
    DeadLetterError,
    InvalidEntriesError,
    LeaseLostError,
    MalformedResponseError,
    PermanentSourceError,
    PermitTimeoutError,
    PollTimeoutError,
    RateLimitedError,
    RedisUnavailableError,
    ResponseTooLargeError,
    SigningKeyError,
    SourceError,
    StaleFencingTokenError,
    StateConflictError,
    TransientSourceError,
    UnknownCapabilityError,
    UnknownConnectorError,
)
from framework.core.host_policy import (
    AllowList,
    HostPolicy,
    RefusedTargetError,
    special_kind,
)
from framework.core.keys import (
    API_AUTH_FAILURES_PREFIX,
    API_TOKENS_KEY,
    CONSUMER_HEARTBEAT_PREFIX,
    CONTROL_CHANNEL,
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_START_ID,
    DEFAULT_STREAM_MAXLEN,
    LEASE_PREFIX,
    LEASE_RENEW_FRACTION,
    LOST_LEASE_BACKOFF_S,
    STANDBY_CHECK_INTERVAL_S,
    SUPERVISOR_CHILDREN_KEY,
    ConnectorKeys,
    KeyScheme,
    audit_chain_of,
    consumer_group_start_key,
    consumer_heartbeat_key,
    control_key,
    dead_letter_stream,
    lease_key,
    shard_of,
    state_key,
    versions_key,
)
from framework.core.logs import (
    Logger,
    configure_logging,
    get_logger,
)
from framework.core.redaction import (
    REDACTED,
    is_secret_key,
    redact,
    redact_url,
)
from framework.core.redis_target import (
    REDIS_URL_SCHEMES,
    RedisTarget,
    parse_redis_target,
)
from framework.core.scripts import (
    lua,
)
from framework.core.secrets import (
    MIN_SECRET_LENGTH,
    KnownSecrets,
    Secrets,
)
from framework.core.settings import (
    Settings,
    check_redis_url,
    read_settings,
)
from framework.core.substitution import (
    substitute,
)

__all__ = [
    "API_AUTH_FAILURES_PREFIX",
    "API_TOKENS_KEY",
    "CONTROL_CHANNEL",
    "ChannelWatch",
    "control_key",
    "dead_letter_stream",
    "AllowList",
    "HostPolicy",
    "RefusedTargetError",
    "special_kind",
    "read_settings",
    "check_redis_url",
    "REDIS_URL_SCHEMES",
    "RedisTarget",
    "parse_redis_target",
    "Secrets",
    "KnownSecrets",
    "MIN_SECRET_LENGTH",
    "AuditTrimError",
    "CONSUMER_HEARTBEAT_PREFIX",
    "DEFAULT_START_ID",
    "consumer_group_start_key",
    "CatalogError",
    "Clock",
    "ConfigError",
    "ConnectorFleetError",
    "DEFAULT_CLAIM_IDLE_MS",
    "DEFAULT_CONSUMER_GROUP",
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_STREAM_MAXLEN",
    "DeadLetterError",
    "Deadlines",
    "outside_deadline",
    "EmbeddedRedis",
    "InvalidEntriesError",
    "LEASE_PREFIX",
    "LEASE_RENEW_FRACTION",
    "LOST_LEASE_BACKOFF_S",
    "LeaseLostError",
    "Logger",
    "MalformedResponseError",
    "PermanentSourceError",
    "PermitTimeoutError",
    "PollTimeoutError",
    "REDACTED",
    "RateLimitedError",
    "RedisUnavailableError",
    "ResponseTooLargeError",
    "STANDBY_CHECK_INTERVAL_S",
    "SUPERVISOR_CHILDREN_KEY",
    "Settings",
    "SigningKeyError",
    "SourceError",
    "StaleFencingTokenError",
    "StateConflictError",
    "SystemClock",
    "TransientSourceError",
    "UNAVAILABLE",
    "UnknownCapabilityError",
    "UnknownConnectorError",
    "cancel_and_wait",
    "configure_logging",
    "consumer_heartbeat_key",
    "create_redis",
    "create_sync_redis",
    "grow_pool",
    "pool_size_for",
    "redis_failures",
    "get_logger",
    "is_out_of_memory",
    "is_secret_key",
    "iso_utc",
    "lease_key",
    "lua",
    "redact",
    "redact_url",
    "redis_answers",
    "state_key",
    "substitute",
    "versions_key",
    "ConnectorKeys",
    "KeyScheme",
    "audit_chain_of",
    "shard_of",
]
