"""The exception tree of connector-fleet.

Every error raised on purpose by the framework, the providers or the worker
derives from :class:`ConnectorFleetError`::

    ConnectorFleetError
    ├── ConfigError                 bad connectors.json / environment (never retried)
    │   ├── InvalidEntriesError     entries fail validation (all problems listed)
    │   ├── ConfigFileError         unreadable file or invalid JSON (file, line, column)
    │   ├── MissingVariableError    ${VAR} without a value
    │   ├── UnknownConnectorError   a name or type nobody registered
    │   ├── VersionError            a version or version range that does not parse
    │   └── RulesFileError          rules.json is invalid (file, rule, JSON pointer, position)
    ├── LeaseLostError              this process no longer holds lease:{name}
    ├── StateConflictError          the saved state moved under us (another writer, a reset)
    ├── SourceError                 the external system misbehaved
    │   ├── TransientSourceError    retryable: transport, timeout, 408, 429, 5xx
    │   │   ├── RateLimitedError    429/503 with a Retry-After longer than we may wait
    │   │   └── PollTimeoutError    a poll ran past its pollTimeoutMs
    │   ├── PermanentSourceError    not retryable: other 4xx (auth, not found, ...)
    │   │   └── ResponseTooLargeError  a body over the connector's maxBodyBytes
    │   └── MalformedResponseError  the body is not what the provider documents
    ├── RedisUnavailableError       Redis cannot be reached or refuses writes (OOM)
    ├── ExpressionError             a rule or condition expression is invalid or failed
    ├── CatalogError                the capability catalog refuses (all name id@version)
    │   ├── InvalidDefinitionError  a definition file or stored entry fails validation
    │   ├── SigningKeyError         a key file or trusted-key entry cannot be used
    │   ├── UnknownCapabilityError  no registered capability matches an id + version range
    │   ├── RevokedCapabilityError  every matching version is revoked (``reason``)
    │   └── SignatureError          never executed: the signature cannot be trusted
    │       ├── UnsignedCapabilityError  no signature at all
    │       ├── SignatureMismatchError   signed, but the definition was changed since
    │       ├── UntrustedKeyError        signed by a key this process does not trust
    │       └── ExpiredKeyError          signed by a trusted key that has expired
    ├── CapabilityError             a capability call failed (retryable: redeliver later)
    │   ├── CallFailedError         every attempt failed (last error in the message)
    │   │   └── RetryLaterError     an attempt failed: redeliver after ``retry_in_s``
    │   └── CircuitOpenError        the breaker of the capability/target is open: fail fast
    ├── PermitError                 a resource permit cannot be had or was lost
    │   ├── PermitTimeoutError      not granted within the wait timeout (retryable)
    │   └── StaleFencingTokenError  a target saw a newer fencing token: the permit was lost
    ├── AuditAppendError            the audit chain could not be appended to
    ├── AuditTrimError              a trim refused: the chain is broken, or it moved meanwhile
    └── DeadLetterError             an event that must not be retried: dead-letter it now
        ├── InvalidEventError       the entry does not match any event contract
        ├── PermanentCallError      a capability failed in a way retrying will not fix
        ├── RefusedTargetError      an HTTP target outside the allow-list, or private (host_policy)
        └── RolledBackError         the handler or a postcondition failed; rollback ran

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

    def __init__(self, source: str, problems: list[str], valid: dict[str, Any], *,
                 secrets: Any = None, broken: dict[str, str] | None = None) -> None:
        self.problems = problems
        self.valid = valid
        self.secrets = secrets  # the Secrets of the valid entries (framework.core.secrets)
        self.broken = broken or {}  # entries with a ${VAR} without a value: name -> why
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


class VersionError(ConfigError):
    """A version (``1.2.3``) or version range (``^1.1``, ``>=1.0,<2``) that does not parse."""


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


class PollTimeoutError(TransientSourceError):
    """A poll ran past its deadline (``pollTimeoutMs``) and was stopped."""


class PermanentSourceError(SourceError):
    """A failure that retrying will not fix: authentication, a bad request, not found."""


class ResponseTooLargeError(PermanentSourceError):
    """A response body over the connector's ``maxBodyBytes``: asking again would
    read the same body, so it is not retried within the poll."""


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
        self.message = message
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


class RulesFileError(ConfigError):
    """The rules file is unreadable or invalid: ``problems`` lists every problem, each
    naming the rule and its position (``rules[2].steps[1].if``)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: invalid rules:\n  " + "\n  ".join(problems))


class CatalogError(ConnectorFleetError):
    """The capability catalog refuses a definition; ``capability`` is ``id@version``
    (or the id alone when no version applies) and starts the message."""

    def __init__(self, message: str, *, capability: str | None = None) -> None:
        self.capability = capability
        super().__init__(f"capability {capability}: {message}" if capability else message)


class UnknownCapabilityError(CatalogError):
    """No registered capability has this id, or none of its versions matches the range."""


class CapabilityError(ConnectorFleetError):
    """A capability call failed; retrying later (a redelivery) may succeed."""

    def __init__(self, message: str, *, capability: str, attempts: int = 0) -> None:
        self.capability = capability
        self.attempts = attempts
        super().__init__(f"capability {capability}: {message}")


class CallFailedError(CapabilityError):
    """Every attempt of a call failed with a retryable error."""


class RetryLaterError(CallFailedError):
    """An attempt failed with a retryable error; the consumer redelivers the entry after
    ``retry_in_s`` (the backoff), without holding an in-flight slot meanwhile."""

    def __init__(self, message: str, *, capability: str, retry_in_s: float) -> None:
        self.retry_in_s = retry_in_s
        super().__init__(message, capability=capability, attempts=1)


class CircuitOpenError(CapabilityError):
    """The circuit breaker ``breaker`` is open: the call was not attempted."""

    def __init__(self, *, capability: str, breaker: str, retry_in_s: float) -> None:
        self.breaker = breaker
        self.retry_in_s = retry_in_s
        super().__init__(
            f"circuit breaker {breaker} is open (half-opens in {retry_in_s:.1f} s)",
            capability=capability,
        )


class InvalidEventError(DeadLetterError):
    """A stream entry that matches no event contract; the reason names the field."""


class PermanentCallError(DeadLetterError):
    """A capability call failed with a non-retryable error (4xx, a declared error)."""


class InvalidDefinitionError(CatalogError):
    """A capability definition that fails validation: the message names the file
    (or Redis key) and every bad field."""


class SigningKeyError(CatalogError):
    """A signing key or trusted public key that cannot be read or used."""


class RevokedCapabilityError(CatalogError):
    """Every version the range matches is revoked; ``reason`` is the operator's."""

    def __init__(self, message: str, *, capability: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message, capability=capability)


class SignatureError(CatalogError):
    """The definition's signature cannot be trusted: never execute it."""


class UnsignedCapabilityError(SignatureError):
    """The definition carries no signature."""


class SignatureMismatchError(SignatureError):
    """The signature does not match the definition: it was changed after signing."""


class UntrustedKeyError(SignatureError):
    """Signed by a key that is not among this process's trusted keys."""


class ExpiredKeyError(SignatureError):
    """Signed by a trusted key whose expiry has passed."""


class PermitError(ConnectorFleetError):
    """A resource permit (``framework.trust.arbiter``) cannot be had or was lost."""

    def __init__(self, message: str, *, resource: str) -> None:
        self.resource = resource
        super().__init__(f"resource {resource}: {message}")


class PermitTimeoutError(PermitError):
    """Every permit of the resource stayed taken for the whole wait timeout; retry later."""


class StaleFencingTokenError(PermitError):
    """A target already accepted a newer fencing token: the caller's permit expired and
    someone else holds the resource now. The write was refused."""

    def __init__(self, *, resource: str, token: int, newest_token: int) -> None:
        self.token = token
        self.newest_token = newest_token
        super().__init__(
            f"fencing token {token} is stale (target already accepted {newest_token})",
            resource=resource,
        )


class AuditAppendError(ConnectorFleetError):
    """The audit chain could not be appended to (too much contention, or Redis refused)."""


class AuditTrimError(ConnectorFleetError):
    """The audit chain was not trimmed: the part to remove (or the checkpoint) is
    broken, or another trim or a tamperer changed it meanwhile. Nothing was removed."""


class RolledBackError(DeadLetterError):
    """The handler or a postcondition failed and the rollback strategy ran; the event
    is dead-lettered with the reason (an operator may replay it)."""

    def __init__(self, reason: str, *, strategy: str, rollback_ok: bool,
                 rule: str | None = None, step: str | None = None) -> None:
        self.strategy = strategy
        self.rollback_ok = rollback_ok
        super().__init__(reason, rule=rule, step=step)
