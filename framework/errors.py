"""The exception tree of connector-fleet.

Every error raised on purpose by the framework, the providers or the worker
derives from :class:`ConnectorFleetError`::

    ConnectorFleetError
    ├── ConfigError                 bad connectors.json / environment (never retried)
    │   ├── InvalidEntriesError     entries fail validation (all problems listed)
    │   ├── ConfigFileError         unreadable file or invalid JSON (file, line, column)
    │   ├── MissingVariableError    ${VAR} without a value
    │   └── UnknownConnectorError   a name or type nobody registered
    ├── LeaseLostError              this process no longer holds lease:{name}
    ├── StateConflictError          the saved state moved under us (another writer, a reset)
    ├── SourceError                 the external system misbehaved
    │   ├── TransientSourceError    retryable: transport, timeout, 408, 429, 5xx
    │   │   └── RateLimitedError    429/503 with a Retry-After longer than we may wait
    │   ├── PermanentSourceError    not retryable: other 4xx (auth, not found, ...)
    │   └── MalformedResponseError  the body is not what the provider documents
    ├── RedisUnavailableError       Redis cannot be reached or refuses writes (OOM)
    ├── ExpressionError             a rule or condition expression is invalid or failed
    └── DeadLetterError             an event that must not be retried: dead-letter it now

Errors about one connector carry its name in ``connector`` and in the message,
so a log line is enough to know which connector and what went wrong.
"""

from __future__ import annotations

from typing import Any


class ConnectorFleetError(Exception):
    """Root of every error raised on purpose by connector-fleet."""

    def __init__(self, message: str, *, connector: str | None = None) -> None:
        self.connector = connector
        super().__init__(f"connector {connector}: {message}" if connector else message)


class ConfigError(ConnectorFleetError):
    """The configuration is invalid; the message says where and why."""


class InvalidEntriesError(ConfigError):
    """Some entries are invalid: ``problems`` lists them all; ``valid`` holds the
    entries that were fine (by name), so a checker can go on checking those."""

    def __init__(self, source: str, problems: list[str], valid: dict[str, Any]) -> None:
        self.problems = problems
        self.valid = valid
        super().__init__(f"{source}: invalid configuration:\n  " + "\n  ".join(problems))


class ConfigFileError(ConfigError):
    """The configuration file cannot be read or is not valid JSON."""


class MissingVariableError(ConfigError):
    """A ``${VAR}`` reference has no value in the environment and no default."""

    def __init__(self, variable: str, *, connector: str, field: str) -> None:
        self.variable = variable
        self.field = field
        super().__init__(
            f"environment variable {variable} is required by providerConfig.{field} "
            "but is not set (set it, or write ${" + variable + ":-default})",
            connector=connector,
        )


class UnknownConnectorError(ConfigError):
    """A connector name or type that is not known."""


class LeaseLostError(ConnectorFleetError):
    """The lease was taken by another instance or expired; stop publishing."""


class StateConflictError(ConnectorFleetError):
    """The stored state changed since it was read; reload before committing."""


class SourceError(ConnectorFleetError):
    """The external system answered badly or not at all."""

    retryable = False


class TransientSourceError(SourceError):
    """A failure worth retrying: transport error, timeout, 408, 429 or 5xx."""

    retryable = True

    def __init__(
        self, message: str, *, connector: str | None = None, retry_after_s: float | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, connector=connector)


class RateLimitedError(TransientSourceError):
    """The source asked us to wait longer than this poll may; try at a later poll."""


class PermanentSourceError(SourceError):
    """A failure that retrying will not fix: authentication, a bad request, not found."""


class MalformedResponseError(SourceError):
    """The response does not have the documented shape."""


class RedisUnavailableError(ConnectorFleetError):
    """Redis is unreachable, loading, read-only or out of memory."""


class ExpressionError(ConnectorFleetError):
    """An expression (rule condition, precondition) that does not parse or fails.

    ``where`` says whose expression it is (``rule close-valve, steps[1].if``) and
    ``position`` the 0-based character offset of the problem, when known.
    """

    def __init__(self, message: str, *, where: str, expression: str,
                 position: int | None = None) -> None:
        self.where = where
        self.expression = expression
        self.position = position
        at = f" at position {position}" if position is not None else ""
        super().__init__(f"{where}: {message}{at} in expression {expression!r}")


class DeadLetterError(ConnectorFleetError):
    """Raised by an event handler for an event that retrying will not fix (invalid
    event, revoked capability, non-retryable failure): the consumer writes it to the
    dead-letter stream with this reason and acknowledges it."""

    def __init__(self, reason: str, *, rule: str | None = None, step: str | None = None,
                 attempts: int | None = None) -> None:
        self.reason = reason
        self.rule = rule
        self.step = step
        self.attempts = attempts
        super().__init__(reason)
