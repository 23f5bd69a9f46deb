"""What a capability is to the executor: a callable registered under an id and a
version, with its call policy.

A handler receives the step's parameters (already templated from the event)
and a :class:`CallContext`; it returns a JSON-able result or raises. Sync
handlers are run in a worker thread. An optional ``read`` function returns the
current state of what the capability acts on (a valve's position), which
pre- and postconditions read as ``state``.

:class:`CapabilitySpec` is registered with the capability registry
(``framework.consuming.capabilities.registry``); providers register theirs the way they register
connector types, or through the ``connector_fleet.capabilities`` entry points.

A rule step reaches a capability as a :class:`CallRequest` handed to a
:class:`CapabilityExecutor`: the registry's ``RegistryExecutor``
(``framework.consuming.capabilities.executor``), alone or wrapped in the signed
catalog's steps (``framework.trust.execution``); it alone calls
:func:`framework.consuming.capabilities.invocation.invoke`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

from redis.asyncio import Redis

from framework.consuming.capabilities.breaker import BreakerPolicy
from framework.core.clock import Clock
from framework.core.errors import DeadLetterError
from framework.core.host_policy import HostPolicy
from framework.core.keys import DEFAULT_PERMIT_TTL_S, DEFAULT_PERMIT_WAIT_TIMEOUT_S
from framework.core.logs import Logger

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
    # The rule step's host allow-list (``allowHosts``): HTTP handlers refuse other
    # targets and private ones it does not name. None: the step has none.
    hosts: HostPolicy | None = None


Handler = Callable[[Mapping[str, Any], CallContext], Awaitable[Any] | Any]
ReadState = Callable[[Mapping[str, Any], CallContext], Awaitable[Mapping[str, Any]]]


def is_retryable(exc: BaseException) -> bool:
    """The default: errors that say so (``retryable = False``: 4xx, validation), dead
    letters and bad parameters (ValueError, TypeError, KeyError) are not retried."""
    if isinstance(exc, DeadLetterError | ValueError | TypeError | KeyError):
        return False
    return bool(getattr(exc, "retryable", True))


OnOpen = Literal["wait", "deadletter"]


@dataclass(frozen=True)
class CallPolicy:
    """Timeout, retries and breaker of one capability.

    By default a failing call is retried three times after the first attempt, each
    after its delay: 1 s, 2 s, 4 s (``max_retries = 3``).
    """

    timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    # Exceptions for which this returns False fail at once (no retry).
    retryable: Callable[[BaseException], bool] = field(default=is_retryable)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    # While the breaker is open: "wait" = raise a retryable error (the entry is
    # delivered again later), "deadletter" = dead-letter the entry now.
    on_open: OnOpen = "wait"

    def backoff_s(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based): base, 2 x base, 4 x base..."""
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1)))


@dataclass(frozen=True)
class ResourcePolicy:
    """Which resource a capability call drives, from its parameters, and how it is shared.

    ``template`` is formatted with the call's parameters (``"valve:{valveId}"``);
    ``max_holders`` > 1 lets that many calls drive the resource at once.
    """

    template: str
    max_holders: int = 1
    wait_timeout_s: float = DEFAULT_PERMIT_WAIT_TIMEOUT_S
    ttl_s: float = DEFAULT_PERMIT_TTL_S

    def resource_for(self, params: Mapping[str, Any]) -> str:
        """The resource key; ValueError naming the parameter the template lacks."""
        try:
            return self.template.format_map(params)
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise ValueError(f"resource template {self.template!r} cannot be filled from "
                             f"the parameters ({', '.join(sorted(params)) or 'none'}): "
                             f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class CapabilitySpec:
    id: str
    version: str
    handler: Handler
    description: str = ""
    read_state: ReadState | None = None
    policy: CallPolicy = field(default_factory=CallPolicy)
    # The part of the breaker key after the id, from the parameters: HTTP
    # capabilities return the target host, so one failing host does not open
    # the breaker of every other.
    breaker_scope: Callable[[Mapping[str, Any]], str | None] | None = None
    # The actuator a call drives (``valve:{valveId}``): the safe pipeline holds a
    # permit on it for the call, so two executors never drive it at once.
    resource: ResourcePolicy | None = None
    # No effect outside the fleet (a log line, an XADD to the fleet's own Redis): the
    # call runs on the fast path, without a timeout slot or a breaker (no remote peer
    # to wait for or to spare); its errors, retries and metrics are the same.
    local: bool = False

    def breaker_key(self, params: Mapping[str, Any]) -> str:
        scope = self.breaker_scope(params) if self.breaker_scope else None
        return f"{self.id}@{scope}" if scope else self.id

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    @cached_property
    def is_async(self) -> bool:
        """A coroutine function (awaited), else a sync one (run in a worker thread)."""
        return inspect.iscoroutinefunction(self.handler)


@dataclass(frozen=True)
class CallRequest:
    """One step of a rule, ready to run: which capability, with what parameters."""

    capability_id: str
    # A framework.core.versions range ("^1", ">=1.0,<2", "1.2.3"); None = the newest.
    version_range: str | None
    params: Mapping[str, Any]
    idempotency_key: str
    event: Mapping[str, Any]
    rule: str
    step: str
    # The step's overrides of the capability's CallPolicy (rules.json
    # ``timeoutMs``, ``onOpen``); None keeps the capability's.
    timeout_ms: int | None = None
    on_open: OnOpen | None = None
    # The registry entry to run as a signed definition names it (``id@version``
    # exactly, or an id: its newest version); None = ``capability_id`` in
    # ``version_range``.
    handler: str | None = None
    # The fencing token of the resource permit held for this call, handed to the
    # handler in its CallContext.
    fencing_token: int | None = None
    # The step's host allow-list, handed to the handler in its CallContext.
    hosts: HostPolicy | None = None


class CapabilityExecutor(Protocol):
    """Runs a :class:`CallRequest` and returns the handler's result.

    Raises :class:`~framework.core.errors.DeadLetterError` for a refusal that retrying
    will not fix; any other exception is a retryable failure (the entry is
    delivered again).
    """

    async def execute(self, request: CallRequest) -> Any: ...
