"""What a capability is to the executor: a callable registered under an id and a
version, with its call policy.

A handler receives the step's parameters (already templated from the event)
and a :class:`CallContext`; it returns a JSON-able result or raises. Sync
handlers are run in a worker thread. An optional ``read`` function returns the
current state of what the capability acts on (a valve's position), which
pre- and postconditions read as ``state``.

:class:`CapabilitySpec` is registered with the capability registry
(``framework.capabilities``); providers register theirs the way they register
connector types, or through the ``connector_fleet.capabilities`` entry points.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from framework.clock import Clock
from framework.logs import Logger

CAPABILITY_ENTRY_POINT_GROUP = "connector_fleet.capabilities"


@dataclass(frozen=True)
class CallContext:
    """What a handler may use besides its parameters."""

    # stream:entry_id:rule:step, the same on every redelivery: pass it on
    # (HTTP ``Idempotency-Key``) so the target can deduplicate too.
    idempotency_key: str
    event: Mapping[str, Any]
    redis: Redis
    clock: Clock
    logger: Logger
    # Set while a resource permit is held: targets that support fencing reject
    # calls carrying a token lower than one they have seen.
    fencing_token: int | None = None


Handler = Callable[[Mapping[str, Any], CallContext], Awaitable[Any] | Any]
ReadState = Callable[[Mapping[str, Any], CallContext], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class CallPolicy:
    """Timeout and retries of one call; defaults from seed 002 (3 attempts, 1/2/4 s)."""

    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    # Exceptions for which this returns False fail at once (no retry).
    retryable: Callable[[BaseException], bool] = field(default=lambda exc: True)


@dataclass(frozen=True)
class CapabilitySpec:
    id: str
    version: str
    handler: Handler
    description: str = ""
    read_state: ReadState | None = None
    policy: CallPolicy = field(default_factory=CallPolicy)

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"
