"""Process settings, read from the environment (pydantic-settings).

These are about the process, not about a connector: where Redis is, where the
connector configuration lives, how to log. Connector entries live in
connectors.json (see :mod:`framework.polling.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framework.core.errors import ConfigError
from framework.core.keys import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_REDIS_URL,
    DEFAULT_RULES_PATH,
    DEFAULT_STEP_IDENTITY_TTL_S,
    DEFAULT_STREAM_MAXLEN,
    DEFAULT_STREAM_TRIM_INTERVAL_S,
    KeyScheme,
)
from framework.core.redis_target import parse_redis_target, scheme_of


def check_redis_url(url: str, *, cluster: bool = False) -> str:
    """``url`` if it is one of the accepted forms (framework.core.redis_target), with
    redis:// turned into redis+cluster:// when ``cluster`` (REDIS_CLUSTER=true), so
    that the URL alone says which client to build; else a ValueError that names the
    bad part (never the URL: it may hold a password)."""
    target = parse_redis_target(url, cluster=cluster)
    if target.mode == "cluster" and "+cluster" not in scheme_of(url):
        scheme = scheme_of(url)
        return f"{scheme}+cluster{url[len(scheme):]}"
    return url


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "connector-fleet"


class Settings(BaseSettings):
    """``REDIS_URL``, ``CONNECTORS_CONFIG_PATH``, ``METRICS_PORT``, ``LOG_LEVEL``,
    ``LOG_FORMAT`` and the ``FLEET_*`` knobs."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    # Declared before the URLs, which read it: a redis:// URL names a cluster seed node.
    redis_cluster: bool = Field(False, validation_alias="REDIS_CLUSTER")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    # Tried when REDIS_URL is unset; if nothing answers there, an embedded
    # redis-server is started on that host and port.
    redis_default_url: str = Field(DEFAULT_REDIS_URL, validation_alias="FLEET_REDIS_DEFAULT_URL")
    redis_server_bin: str = Field("redis-server", validation_alias="FLEET_REDIS_SERVER_BIN")
    data_dir: Path = Field(default_factory=_default_data_dir, validation_alias="FLEET_DATA_DIR")
    connectors_config_path: Path = Field(
        Path(DEFAULT_CONFIG_PATH), validation_alias="CONNECTORS_CONFIG_PATH"
    )
    # Unset: rules.json beside the connectors file (see resolved_rules_path).
    rules_path: Path | None = Field(None, validation_alias="RULES_PATH")
    metrics_port: int | None = Field(None, ge=0, le=65535, validation_alias="METRICS_PORT")
    metrics_host: str = Field("0.0.0.0", validation_alias="METRICS_HOST")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="LOG_LEVEL"
    )
    log_format: Literal["json", "console"] = Field("json", validation_alias="LOG_FORMAT")
    # A PEM Ed25519 private key: consumers sign every audit record they append with it.
    audit_signing_key: Path | None = Field(None, validation_alias="AUDIT_SIGNING_KEY")
    # Audit records spread over this many chains (audit:chain:I, one per consumer
    # process by name): on a Redis Cluster, appends then run on several masters.
    audit_chains: int = Field(1, ge=1, le=1024, validation_alias="FLEET_AUDIT_CHAINS")
    drain_timeout_s: float = Field(
        DEFAULT_DRAIN_TIMEOUT_S, gt=0, validation_alias="FLEET_DRAIN_TIMEOUT_S"
    )

    # Cluster hash tags in the connectors' keys (lease:{NAME}...); off: the documented
    # names (lease:NAME), for a single server or Sentinel. See framework.core.keys.
    redis_hash_tags: bool = Field(False, validation_alias="FLEET_REDIS_HASH_TAGS")
    # Durability (framework.polling.durability): each fenced commit waits for this many
    # replicas to acknowledge it (WAIT) before the poll counts as published.
    redis_min_replicas_acks: int = Field(0, ge=0, validation_alias="REDIS_MIN_REPLICAS_ACKS")
    redis_replicas_ack_timeout_ms: int = Field(
        1000, gt=0, validation_alias="REDIS_REPLICAS_ACK_TIMEOUT_MS")

    # This process's replica of a type that runs several at once (an http-webhook
    # behind a Service): its lease is lease:NAME:REPLICA. Unset: the one instance.
    connector_replica: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", validation_alias="CONNECTOR_REPLICA")
    # The ops API: whether reading (GET /api/v1/...) needs a token too; changing
    # anything always does, and /metrics, /healthz, /readyz and /health stay open.
    api_read_auth: bool = Field(False, validation_alias="FLEET_API_READ_AUTH")
    # An admin token for the ops API that the deployment provides (a Secret): stored
    # (hashed) at start. Never printed: a SecretStr.
    api_admin_token: SecretStr | None = Field(None, validation_alias="FLEET_API_ADMIN_TOKEN")
    # OIDC / JWT bearer tokens (worker.ops.jwt_tokens): the identity provider's public
    # keys (a JWKS file), the issuer and audience tokens must name, the role claim.
    api_jwks_path: Path | None = Field(None, validation_alias="FLEET_API_JWKS_PATH")
    api_jwt_issuer: str | None = Field(None, validation_alias="FLEET_API_JWT_ISSUER")
    api_jwt_audience: str | None = Field(None, validation_alias="FLEET_API_JWT_AUDIENCE")
    api_jwt_role_claim: str = Field("role", min_length=1,
                                    validation_alias="FLEET_API_JWT_ROLE_CLAIM")

    restart_base_s: float = Field(1.0, gt=0, validation_alias="FLEET_RESTART_BASE_S")
    restart_max_s: float = Field(60.0, gt=0, validation_alias="FLEET_RESTART_MAX_S")
    # Retention (framework.consuming.retention): 0 s turns the consumers' trimming off,
    # a cap of 0 leaves only the trimming of acknowledged entries.
    stream_trim_interval_s: float = Field(
        DEFAULT_STREAM_TRIM_INTERVAL_S, ge=0, validation_alias="FLEET_STREAM_TRIM_INTERVAL_S"
    )
    stream_max_len: int = Field(
        DEFAULT_STREAM_MAXLEN, ge=0, validation_alias="FLEET_STREAM_MAX_LEN"
    )
    step_identity_ttl_s: int = Field(
        DEFAULT_STEP_IDENTITY_TTL_S, ge=0, validation_alias="FLEET_STEP_IDENTITY_TTL_S"
    )

    @property
    def key_scheme(self) -> KeyScheme:
        return KeyScheme(tagged=self.redis_hash_tags)

    @property
    def resolved_rules_path(self) -> Path:
        return self.rules_path or self.connectors_config_path.parent / DEFAULT_RULES_PATH

    @field_validator("redis_url", "redis_default_url")
    @classmethod
    def _accepted_redis_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        cluster = bool(info.data.get("redis_cluster", False))
        return None if value is None else check_redis_url(value, cluster=cluster)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def read_settings(**overrides: Any) -> Settings:
    """The environment's settings; a ConfigError of one line naming each bad
    variable and why (``REDIS_URL: scheme 'http://' is not accepted (...)``)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("invalid settings: " + "; ".join(
            _describe_setting(error) for error in exc.errors())) from None


def _describe_setting(error: Any) -> str:
    variable = ".".join(str(part) for part in error["loc"]) or "(settings)"
    reason = str(error["msg"]).removeprefix("Value error, ")
    return f"{variable}: {reason}"
