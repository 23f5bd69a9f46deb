"""The ``http-webhook`` providerConfig: where it listens, how callers authenticate,
what a body must look like and how it becomes an event.

Every part is checked when connectors.json is read: a bad schema, a contract that
does not import, a JMESPath expression that does not compile, an auth mode without
keys, are config errors naming the field, never a failure at the first request.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

import jmespath
from jmespath import exceptions as jmespath_errors
from jsonschema import Draft202012Validator
from jsonschema import exceptions as schema_errors
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel

# A timestamped signature older (or newer) than this is refused by default.
DEFAULT_REPLAY_WINDOW_S = 300
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class _Keys(_Model):
    """Keys by client id (``{"partner-a": "${PARTNER_A_KEY}"}``) and/or a file of
    ``client-id:key`` lines, re-read when it changes (rotation without a restart: list
    the old and the new key of a client during the overlap). Named ``secrets`` so that
    a key written literally in connectors.json is redacted wherever the config prints."""

    secrets: dict[str, str] = Field(default_factory=dict)
    secrets_file: Path | None = None

    @model_validator(mode="after")
    def _some_keys(self) -> _Keys:
        if not self.secrets and self.secrets_file is None:
            raise ValueError("secrets or secretsFile is required")
        for client, key in self.secrets.items():
            if not client or not key:
                raise ValueError("secrets: every client id and key must be non-empty")
        return self


class NoAuth(_Model):
    """Anyone may post (a private network); the client is the peer's address."""

    mode: Literal["none"]


class ApiKeyAuth(_Keys):
    mode: Literal["apiKey"]
    header: str = Field("X-API-Key", min_length=1)


class BearerAuth(_Keys):
    """``Authorization: Bearer <token>``."""

    mode: Literal["bearer"]


class GithubHmacAuth(_Keys):
    """GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``."""

    mode: Literal["githubHmac"]
    header: str = Field("X-Hub-Signature-256", min_length=1)


class TimestampedHmacAuth(_Keys):
    """``X-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the Unix
    timestamp in ``X-Signature-Timestamp``; refused outside the replay window."""

    mode: Literal["hmac"]
    header: str = Field("X-Signature", min_length=1)
    timestamp_header: str = Field("X-Signature-Timestamp", min_length=1)
    replay_window_s: int = Field(DEFAULT_REPLAY_WINDOW_S, gt=0, le=24 * 3600)


Auth = Annotated[
    NoAuth | ApiKeyAuth | BearerAuth | GithubHmacAuth | TimestampedHmacAuth,
    Field(discriminator="mode"),
]


class RateLimit(_Model):
    """At most ``requests`` per client in each window of ``windowS`` seconds, counted
    in Redis: every replica shares the count."""

    requests: int = Field(gt=0)
    window_s: float = Field(1.0, gt=0, le=3600)


def _compiles(expression: str) -> str:
    try:
        jmespath.compile(expression)
    except jmespath_errors.JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression {expression!r}: {exc}") from None
    return expression


Expression = Annotated[str, AfterValidator(_compiles)]


class EventMapping(_Model):
    """How a body becomes the event ``{source, value, unit?, timestamp, nodeId,
    metadata}``: JMESPath expressions into the body. Without ``nodeIdPath`` the node is
    the client id; without ``timestampPath`` the time of receipt."""

    source: str = Field("webhook", min_length=1)
    value_path: Expression = "@"
    node_id_path: Expression | None = None
    timestamp_path: Expression | None = None
    unit: str | None = None


def _valid_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        Draft202012Validator.check_schema(schema)
    except schema_errors.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


def _importable_contract(path: str) -> str:
    load_contract(path)
    return path


def load_contract(path: str) -> type[BaseModel]:
    """The pydantic model named ``package.module:Model``, or ValueError saying why not."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"contract {path!r}: expected 'package.module:Model'")
    try:
        model = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"contract {path!r} cannot be loaded: {exc}") from None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"contract {path!r} is not a pydantic model")
    return model


class WebhookConfig(_Model):
    port: int = Field(ge=0, le=65535)
    host: str = Field("0.0.0.0", min_length=1)
    path: str = Field("/webhook", pattern=r"^/[^?#\s]*$")
    method: Literal["POST", "PUT"] = "POST"
    auth: Auth
    # The WebSocket endpoint (one message = one event); None: no WebSocket.
    websocket_path: str | None = Field(None, pattern=r"^/[^?#\s]*$")
    websocket_max_in_flight: int = Field(64, ge=1, le=10_000)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, le=64 * 1024 * 1024)
    content_types: list[str] = Field(default_factory=lambda: ["application/json"], min_length=1)
    json_schema: Annotated[dict[str, Any], AfterValidator(_valid_schema)] | None = Field(
        None, alias="schema")
    contract: Annotated[str, AfterValidator(_importable_contract)] | None = None
    rate_limit: RateLimit | None = None
    # Redeliveries with the same key (per client) within the dedupe window are no-ops.
    idempotency_header: str = Field("Idempotency-Key", min_length=1)
    delivery_id_header: str | None = None
    # Where the body carries its own idempotency key (the only one a WebSocket message
    # has); used when no header gives one. A JMESPath expression.
    idempotency_path: Expression | None = None
    event: EventMapping = Field(default_factory=EventMapping)
    # Requests waiting for their commit, at most; more are answered 503.
    max_pending: int = Field(10_000, ge=1)
    # The longest a request waits for its commit (and for its body) before a 503.
    request_timeout_ms: int = Field(10_000, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> WebhookConfig:
        if self.json_schema is not None and self.contract is not None:
            raise ValueError("give schema or contract, not both")
        if self.websocket_path is not None:
            if self.websocket_path == self.path:
                raise ValueError("websocketPath must differ from path")
            if isinstance(self.auth, GithubHmacAuth | TimestampedHmacAuth):
                raise ValueError("websocketPath needs auth mode apiKey, bearer or none "
                                 "(a signature covers one body, not a connection)")
        return self
