"""Calling a capability: timeout, retries with backoff, circuit breaker, metrics.

:func:`invoke` runs one call of a :class:`~framework.consuming.capabilities.spec.CapabilitySpec`
under its :class:`~framework.consuming.capabilities.spec.CallPolicy`:

* a local capability (``CapabilitySpec.local``: no effect outside the fleet) takes the
  fast path: no timeout and no breaker, the rest as below;
* each attempt has ``timeout_s`` (:class:`~framework.core.deadlines.Deadlines`: up to
  50 ms more); sync handlers run in a worker thread (a timed-out thread cannot be
  stopped: it finishes in the background and its result is dropped);
* a failure the policy calls retryable is retried after 1 s, 2 s, 4 s... (on
  the context's clock, so tests do not wait); a ``Retry-After`` longer than
  the delay is honoured up to ``backoff_max_s``;
* with ``reschedule``, a retryable failure does not wait here: it raises
  :class:`~framework.core.errors.RetryLaterError` with the delay, and the consumer
  redelivers the entry after it without holding an in-flight slot meanwhile;
* a non-retryable failure raises :class:`~framework.core.errors.PermanentCallError`
  at once (a dead letter);
* a Redis failure inside the handler (our infrastructure, not the target) is raised
  at once as :class:`~framework.core.errors.RedisUnavailableError`: not retried here,
  not counted by the breaker (the entry comes back once Redis does). Redis waits
  inside a handler run under ``outside_deadline()``: they do not use the call's timeout;
* every retryable failure counts against the breaker of the capability (and
  target host); while it is open the call is not attempted:
  :class:`~framework.core.errors.CircuitOpenError` (retryable: the entry comes back
  later) or, with ``on_open = "deadletter"``, a dead letter.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from redis import exceptions as redis_errors

from framework.consuming.capabilities.breaker import BreakerBoard, breaker_state_gauge
from framework.consuming.capabilities.spec import CallContext, CallPolicy, CapabilitySpec
from framework.core.connections import is_out_of_memory
from framework.core.deadlines import Deadlines
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    DeadLetterError,
    PermanentCallError,
    RedisUnavailableError,
    RetryLaterError,
    TransientSourceError,
)

# Redis failing under a handler: the fleet's own infrastructure, never the target's fault
# (not OSError: a device's refused connection is one).
_REDIS_FAILURES = (redis_errors.ConnectionError, redis_errors.TimeoutError,
                   redis_errors.BusyLoadingError, redis_errors.ReadOnlyError,
                   RedisUnavailableError)

_DURATION_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


@dataclass(frozen=True)
class CallMetrics:
    """``connector_call_duration_ms{capability_id,version,status}`` and the
    breaker state gauge."""

    duration_ms: Histogram
    # connector_breaker_state{breaker}: for the BreakerBoard of the same process.
    breaker_state: Gauge
    # Every call observes one of a few children: labels() on each would cost more.
    _durations: Callable[..., Histogram] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_durations", cache(self.duration_ms.labels))

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CallMetrics:
        return cls(
            duration_ms=Histogram(
                "connector_call_duration_ms",
                "Duration of one capability call attempt in milliseconds",
                ["capability_id", "version", "status"],
                buckets=_DURATION_BUCKETS_MS,
                registry=registry,
            ),
            breaker_state=breaker_state_gauge(registry),
        )

    def observe(self, spec: CapabilitySpec, status: str, duration_ms: float) -> None:
        self._durations(spec.id, spec.version, status).observe(duration_ms)


async def invoke(
    spec: CapabilitySpec,
    params: Mapping[str, Any],
    context: CallContext,
    *,
    deadlines: Deadlines,
    breakers: BreakerBoard | None = None,
    policy: CallPolicy | None = None,
    metrics: CallMetrics | None = None,
    reschedule: bool = False,
) -> Any:
    """The handler's result, after as many attempts as the policy allows. ``deadlines``:
    the process's timer set (one timer for many calls); ``breakers`` None: no breaker;
    ``policy`` None: the capability's own; ``reschedule``: one attempt, a retry is the
    caller's (:class:`RetryLaterError`)."""
    policy = policy or spec.policy
    if spec.local:  # the fast path: nothing remote to time out or to spare
        breakers = None
    breaker_key = spec.breaker_key(params) if breakers is not None else spec.id
    retry = 0
    while True:
        if breakers is not None:
            await _check_breaker(spec, breakers, breaker_key, policy)
        started = time.perf_counter()
        try:
            if spec.local:
                result = await _attempt(spec, params, context)
            else:
                with deadlines.after(policy.timeout_s):
                    result = await _attempt(spec, params, context)
        except Exception as exc:
            if _is_redis_failure(exc):
                _observe(metrics, spec, "redis_unavailable", started)
                raise _redis_unavailable(spec, exc) from exc
            status = "timeout" if isinstance(exc, TimeoutError) else "error"
            _observe(metrics, spec, status, started)
            retryable = policy.retryable(exc)
            if breakers is not None:
                # A non-retryable answer (a 400) still shows the target is up.
                record = breakers.record_failure if retryable else breakers.record_success
                await record(breaker_key, policy.breaker)
            if not retryable:
                raise _permanent(spec, exc, attempts=retry + 1) from exc
            if retry >= policy.max_retries:
                raise CallFailedError(
                    f"failed after {retry + 1} attempts: {_describe(exc)}",
                    capability=spec.key, attempts=retry + 1,
                ) from exc
            retry += 1
            delay_s = _delay_s(policy, retry, exc)
            if reschedule:
                raise RetryLaterError(f"attempt failed, retry in {delay_s:g} s: "
                                      f"{_describe(exc)}", capability=spec.key,
                                      retry_in_s=delay_s) from exc
            context.logger.warning(
                "capability_call_retrying", capability=spec.key, attempt=retry,
                retry_in_s=delay_s, error=_describe(exc),
            )
            await context.clock.sleep(delay_s)
            continue
        _observe(metrics, spec, "ok", started)
        if breakers is not None:
            await breakers.record_success(breaker_key, policy.breaker)
        return result


async def _check_breaker(
    spec: CapabilitySpec, breakers: BreakerBoard, key: str, policy: CallPolicy
) -> None:
    refusal_s = await breakers.refusal_s(key, policy.breaker)
    if refusal_s is None:
        return
    error = CircuitOpenError(capability=spec.key, breaker=key, retry_in_s=refusal_s)
    if policy.on_open == "deadletter":
        raise DeadLetterError(str(error)) from error
    raise error


async def _attempt(spec: CapabilitySpec, params: Mapping[str, Any], context: CallContext) -> Any:
    if spec.is_async:
        return await spec.handler(params, context)
    result = await asyncio.to_thread(spec.handler, params, context)
    if inspect.isawaitable(result):
        return await result
    return result


def _delay_s(policy: CallPolicy, retry: int, exc: BaseException) -> float:
    delay_s = policy.backoff_s(retry)
    if isinstance(exc, TransientSourceError) and exc.retry_after_s:
        delay_s = min(policy.backoff_max_s, max(delay_s, exc.retry_after_s))
    return delay_s


def _is_redis_failure(exc: BaseException) -> bool:
    return isinstance(exc, _REDIS_FAILURES) or is_out_of_memory(exc)


def _redis_unavailable(spec: CapabilitySpec, exc: Exception) -> RedisUnavailableError:
    if isinstance(exc, RedisUnavailableError):
        return exc
    return RedisUnavailableError(f"capability {spec.key}: Redis unavailable during the "
                                 f"call: {_describe(exc)}")


def _permanent(spec: CapabilitySpec, exc: Exception, *, attempts: int) -> DeadLetterError:
    if isinstance(exc, DeadLetterError):
        exc.attempts = attempts
        return exc
    return PermanentCallError(
        f"capability {spec.key}: not retryable: {_describe(exc)}", attempts=attempts
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _observe(metrics: CallMetrics | None, spec: CapabilitySpec, status: str,
             started: float) -> None:
    if metrics is not None:
        metrics.observe(spec, status, (time.perf_counter() - started) * 1000)
