"""Connector configuration: the model and its two sources (file and environment),
with ``${VAR}`` substituted in ``providerConfig`` and secrets redacted on output.

``load_fleet_config`` is the one entry point; it collects every problem it
finds before raising, so ``config check`` can list them all at once. An entry
whose ``${VAR}`` has no value stops only that connector: it is listed in
``FleetConfig.broken`` and the others load. Every value a ``${VAR}`` took from
the environment is in ``FleetConfig.secrets``, redacted wherever it is printed.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from framework.core.errors import (
    ConfigError,
    ConfigFileError,
    InvalidEntriesError,
    MissingVariableError,
)
from framework.core.keys import (
    DEFAULT_LEASE_TTL_S,
    DEFAULT_OUTPUT_STREAM,
    DEFAULT_STREAM_MAXLEN,
    ConnectorKeys,
    KeyScheme,
)
from framework.core.redaction import redact
from framework.core.secrets import Secrets
from framework.core.substitution import substitute

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Far above any API page we read (a 100,000-alert NOAA answer is ~25 MB without
# geometry), far below what takes a process sharing many connectors down.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# GitHub's primary limit resets within the hour; longer waits are caps, not advice.
DEFAULT_MAX_RETRY_AFTER_MS = 3_600_000
# The derived poll deadline: this many intervals, and at least this many times the
# worst case of one request (every attempt at its timeout, plus the backoffs).
_POLL_DEADLINE_INTERVALS = 3
_POLL_DEADLINE_REQUESTS = 2


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class RetryConfig(_Model):
    """Exponential backoff between attempts of one request."""

    base_delay_ms: int = Field(150, gt=0)
    max_delay_ms: int = Field(10_000, gt=0)
    jitter_ratio: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _max_not_below_base(self) -> RetryConfig:
        if self.max_delay_ms < self.base_delay_ms:
            raise ValueError("maxDelayMs must be greater than or equal to baseDelayMs")
        return self


class ConnectorConfig(_Model):
    """One entry of connectors.json (camelCase there, snake_case here)."""

    name: str = Field(pattern=_NAME_PATTERN)
    type: str = Field(min_length=1)
    enabled: bool = True
    poll_interval_ms: int = Field(60_000, gt=0)
    request_timeout_ms: int = Field(10_000, gt=0)
    # None: derived (see poll_deadline_ms).
    poll_timeout_ms: int | None = Field(None, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    max_retry_after_ms: int = Field(DEFAULT_MAX_RETRY_AFTER_MS, gt=0)
    max_retries: int = Field(2, ge=0, le=100)
    output_stream: str = Field(DEFAULT_OUTPUT_STREAM, min_length=1)
    # None: one stream shared by every connector; N: N shards STREAM:0..N-1, this
    # connector publishing to one chosen by its name (framework.core.keys.KeyScheme).
    output_shards: int | None = Field(None, ge=1, le=16_384)
    lease_ttl_seconds: int = Field(DEFAULT_LEASE_TTL_S, ge=2)
    stream_max_len: int = Field(DEFAULT_STREAM_MAXLEN, gt=0)
    retry_config: RetryConfig = Field(default_factory=lambda: RetryConfig())
    provider_config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _poll_outlasts_request(self) -> ConnectorConfig:
        if self.poll_timeout_ms is not None and self.poll_timeout_ms < self.request_timeout_ms:
            raise ValueError("pollTimeoutMs must be greater than or equal to requestTimeoutMs")
        return self

    @property
    def poll_deadline_ms(self) -> int:
        """``pollTimeoutMs``, or when unset: three poll intervals, but at least twice
        one request's worst case (every attempt at ``requestTimeoutMs`` plus the
        backoffs at ``maxDelayMs``)."""
        if self.poll_timeout_ms is not None:
            return self.poll_timeout_ms
        one_request_ms = (self.max_retries + 1) * self.request_timeout_ms + (
            self.max_retries * self.retry_config.max_delay_ms
        )
        return max(_POLL_DEADLINE_INTERVALS * self.poll_interval_ms,
                   _POLL_DEADLINE_REQUESTS * one_request_ms)

    def keys(self, scheme: KeyScheme) -> ConnectorKeys:
        """This connector's Redis keys (lease, state, metrics, output stream)."""
        return scheme.connector(self.name, output_stream=self.output_stream,
                                output_shards=self.output_shards)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for key, value in super().__repr_args__():
            yield key, redact(value) if key == "provider_config" else value

    def redacted(self, secrets: Secrets | None = None) -> dict[str, Any]:
        """The entry as connectors.json spells it, secrets replaced by ``***``: the
        values of secret-looking keys, and every value in ``secrets`` wherever it is."""
        data = self.model_dump(by_alias=True)
        data["providerConfig"] = redact(data["providerConfig"])
        return data if secrets is None else dict(secrets.redact(data))


@dataclass(frozen=True)
class FleetConfig:
    """Every connector of the fleet, by name, and where they were read from."""

    connectors: Mapping[str, ConnectorConfig]
    source: str
    # Every value a ${VAR} took from the environment: redacted wherever printed.
    secrets: Secrets = field(default_factory=Secrets)
    # Entries that cannot run (a ${VAR} without a value), by name: why, in one line.
    broken: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> ConnectorConfig | None:
        return self.connectors.get(name)

    def enabled(self) -> list[ConnectorConfig]:
        return [c for c in self.connectors.values() if c.enabled]


def load_fleet_config(
    path: Path | str, environ: Mapping[str, str] | None = None
) -> FleetConfig:
    """Read the fleet from the environment when ``ENABLED_CONNECTORS`` is set,
    otherwise from the JSON file at ``path``; substitute ``${VAR}``; validate."""
    env = os.environ if environ is None else environ
    if env.get("ENABLED_CONNECTORS", "").strip():
        raw = _entries_from_environment(env)
        source = "environment (ENABLED_CONNECTORS)"
    else:
        raw = _entries_from_file(Path(path))
        source = str(path)
    return _validate_entries(raw, env, source)


def _entries_from_file(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(
            f"{path}: no such file (set CONNECTORS_CONFIG_PATH, or ENABLED_CONNECTORS "
            "for environment mode)"
        ) from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigFileError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("connectors"), list):
        raise ConfigFileError(f'{path}: expected an object {{"connectors": [...]}}')
    return list(document["connectors"])


_UNIVERSAL_ENV_FIELDS = {
    "TYPE": "type",
    "ENABLED": "enabled",
    "POLL_INTERVAL_MS": "pollIntervalMs",
    "REQUEST_TIMEOUT_MS": "requestTimeoutMs",
    "POLL_TIMEOUT_MS": "pollTimeoutMs",
    "MAX_BODY_BYTES": "maxBodyBytes",
    "MAX_RETRY_AFTER_MS": "maxRetryAfterMs",
    "MAX_RETRIES": "maxRetries",
    "OUTPUT_STREAM": "outputStream",
    "OUTPUT_SHARDS": "outputShards",
    "LEASE_TTL_SECONDS": "leaseTtlSeconds",
    "STREAM_MAX_LEN": "streamMaxLen",
}
_RETRY_ENV_FIELDS = {
    "RETRY_BASE_DELAY_MS": "baseDelayMs",
    "RETRY_MAX_DELAY_MS": "maxDelayMs",
    "RETRY_JITTER_RATIO": "jitterRatio",
}


def env_prefix(name: str) -> str:
    """``weather-noaa`` -> ``CONNECTOR_WEATHER_NOAA_``."""
    return "CONNECTOR_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_"


def _entries_from_environment(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip() for n in env["ENABLED_CONNECTORS"].split(",") if n.strip()]
    prefixes = {name: env_prefix(name) for name in names}
    entries: list[Any] = []
    for name, prefix in prefixes.items():
        # A longer prefix belongs to another connector (weather vs weather-noaa).
        longer = [p for p in prefixes.values() if p != prefix and p.startswith(prefix)]
        entry: dict[str, Any] = {"name": name}
        retry: dict[str, str] = {}
        provider: dict[str, str] = {}
        for key, value in env.items():
            if not key.startswith(prefix) or any(key.startswith(p) for p in longer):
                continue
            field = key[len(prefix) :]
            if field in _UNIVERSAL_ENV_FIELDS:
                entry[_UNIVERSAL_ENV_FIELDS[field]] = value
            elif field in _RETRY_ENV_FIELDS:
                retry[_RETRY_ENV_FIELDS[field]] = value
            elif field:
                provider[to_camel(field.lower())] = value
        if retry:
            entry["retryConfig"] = retry
        entry["providerConfig"] = provider
        entries.append(entry)
    return entries


def _validate_entries(raw: list[Any], env: Mapping[str, str], source: str) -> FleetConfig:
    problems: list[str] = []
    connectors: dict[str, ConnectorConfig] = {}
    broken: dict[str, str] = {}
    taken: set[str] = set()
    for index, entry in enumerate(raw):
        label = _entry_label(entry, index)
        if not isinstance(entry, dict):
            problems.append(f"{label}: expected an object, got {type(entry).__name__}")
            continue
        try:
            config = _validated_entry(entry, env, label, taken)
        except MissingVariableError as exc:
            name = entry.get("name")
            if isinstance(name, str) and re.match(_NAME_PATTERN, name):
                broken[name] = str(exc)  # only this connector stops
            else:
                problems.append(str(exc))
        except ValidationError as exc:
            problems.extend(f"{label}: {_describe(error)}" for error in exc.errors())
        else:
            connectors[config.name] = config
    problems += _duplicate_names(raw)
    for name in _duplicate_names_of(raw):  # no copy runs: which one was meant?
        connectors.pop(name, None)
        broken.pop(name, None)
    secrets = Secrets.of(taken)
    if problems:
        problems = [secrets.redact_text(problem) for problem in problems]
        raise InvalidEntriesError(source, problems, connectors, secrets=secrets,
                                  broken=broken)
    return FleetConfig(connectors=connectors, source=source, secrets=secrets, broken=broken)


def _validated_entry(entry: dict[str, Any], env: Mapping[str, str], label: str,
                     taken: set[str]) -> ConnectorConfig:
    # A disabled entry may wait for its secrets: its ${VAR}s stay as written.
    if _is_enabled(entry):
        entry = _substitute_entry(entry, env, label, taken)
    return ConnectorConfig.model_validate(entry, strict=False)


def _duplicate_names(raw: list[Any]) -> list[str]:
    """One problem per name given to more than one entry, whatever else is wrong
    with those entries (each of their other problems is reported too)."""
    return [
        f"connector {name}: duplicate connector name {name!r} ("
        + ", ".join(f"connectors[{i}]" for i, e in enumerate(raw)
                    if isinstance(e, dict) and e.get("name") == name) + ")"
        for name in _duplicate_names_of(raw)
    ]


def _duplicate_names_of(raw: list[Any]) -> list[str]:
    counts = Counter(e.get("name") for e in raw if isinstance(e, dict))
    return [name for name, count in counts.items() if isinstance(name, str) and count > 1]


def _is_enabled(entry: dict[str, Any]) -> bool:
    value = entry.get("enabled", True)
    if isinstance(value, str):  # environment mode: CONNECTOR_<NAME>_ENABLED=false
        return value.strip().lower() not in {"false", "0", "no", "off"}
    return bool(value)


def _entry_label(entry: Any, index: int) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        return f"connector {entry['name']}"
    return f"connectors[{index}]"


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(entry)"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field"
    return f"{location}: {error['msg']}"


def _substitute_entry(entry: dict[str, Any], env: Mapping[str, str], label: str,
                      taken: set[str]) -> dict[str, Any]:
    provider = entry.get("providerConfig")
    if not isinstance(provider, dict):
        return entry
    name = label.removeprefix("connector ")

    def missing(variable: str, path: str) -> str:
        raise MissingVariableError(variable, connector=name, field=path)

    return {**entry, "providerConfig": substitute(provider, env, missing, taken=taken)}


M = TypeVar("M", bound=BaseModel)


def parse_provider_config(model: type[M], config: ConnectorConfig) -> M:
    """Validate ``providerConfig`` against a provider's model, or raise a
    :class:`ConfigError` naming the type, the connector and every bad field
    (``JIRA connector jira-prod: baseUrl is required``; empty counts as missing)."""
    missing = _missing_required(model, config.provider_config)
    problems = [f"{key} is required" for key in missing]
    try:
        settings = model.model_validate(config.provider_config)
    except ValidationError as exc:
        problems += [
            f"providerConfig.{_describe(error)}".replace("providerConfig.(entry)", "providerConfig")
            for error in exc.errors()
            if not error["loc"] or error["loc"][0] not in missing
        ]
    if problems:
        raise ConfigError(f"{config.type} connector {config.name}: {'; '.join(problems)}")
    return settings


def _missing_required(model: type[BaseModel], given: Mapping[str, Any]) -> list[str]:
    """The required fields of ``model`` that ``given`` lacks or leaves empty, by
    the name connectors.json spells them."""
    return [
        field.alias or name
        for name, field in model.model_fields.items()
        if field.is_required() and all(given.get(key) in (None, "")
                                       for key in (field.alias or name, name))
    ]
