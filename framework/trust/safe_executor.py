"""The SafeExecutor: the seed's seven steps around every capability call.

For a :class:`~framework.consuming.capabilities.spec.CallRequest` (a rule's ``call`` step):

1. **resolve** the capability in the :class:`~framework.trust.catalog.store.Catalog` (id +
   version range: the newest matching version, neither revoked nor badly signed);
2. **verify** its Ed25519 signature (done and cached per version by the catalog);
3. **preconditions**: every ``check`` over ``event``, ``payload``, ``params`` and
   ``state`` (what the capability's read function returns: the valve's position);
4. **permit** from the :class:`~framework.trust.arbiter.ResourceArbiter` on the resource
   of the call (``valve:{valveId}``); the preconditions are checked again once
   it is held, since another holder may have changed the state meanwhile;
5. **invoke** the handler (:func:`invoke`: timeout, retries,
   breaker, sync handlers in a thread) with the fencing token in its context;
6. **postconditions**, each polled every ``pollIntervalMs`` until true or
   ``timeoutMs`` has passed (names: the above plus ``result``);
7. **audit**: the outcome is appended to the :class:`~framework.trust.audit.chain.AuditChain`.

Outcomes, as the consumer sees them:

* success: the handler's result is returned (the entry is acknowledged);
* a false precondition: recorded (``precondition_failed``, with the condition),
  the handler is not called, and ``{"executed": false, ...}`` is returned: the
  entry is **acknowledged**, since "the valve is already closed" is an answer,
  not a failure, and retrying would not change it;
* a catalog refusal (unknown, revoked, unsigned, tampered, untrusted key):
  recorded (``refused``) and raised as :class:`~framework.core.errors.DeadLetterError`;
* the handler fails (after invoke's retries) or a postcondition stays false:
  recorded (``failed``), the definition's ``rollbackStrategy`` runs under the
  same permit and is recorded (``rollback``), an alert event is added to
  ``capability-alerts``; then a handler failure is re-raised as it was
  (retryable ones come back, preconditions are checked again), while a
  postcondition failure raises :class:`~framework.core.errors.RolledBackError` (a
  dead letter: the action ran and did not take effect, repeating it blindly is
  not safe). The permit is released in every case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis

from framework.consuming.capabilities.breaker import BreakerBoard
from framework.consuming.capabilities.invocation import CallMetrics, invoke
from framework.consuming.capabilities.registry import CapabilityRegistry, policy_for
from framework.consuming.capabilities.spec import (
    CallContext,
    CallRequest,
    CapabilitySpec,
    ResourcePolicy,
    is_retryable,
)
from framework.consuming.rules.templating import Template
from framework.core.clock import Clock, SystemClock, iso_utc
from framework.core.deadlines import Deadlines
from framework.core.errors import (
    CatalogError,
    CircuitOpenError,
    DeadLetterError,
    ExpressionError,
    PermitTimeoutError,
    RolledBackError,
    StaleFencingTokenError,
    UnknownCapabilityError,
)
from framework.core.expressions import Expression
from framework.core.keys import ALERTS_STREAM, DEFAULT_STREAM_MAXLEN
from framework.core.logs import Logger, get_logger
from framework.trust.arbiter import Permit, ResourceArbiter, permit_wait_histogram
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.store import CapabilityDefinition, Catalog, Condition, RollbackAction


@dataclass(frozen=True)
class ExecutionMetrics:
    """The seed's execution metrics (``connector_call_duration_ms`` is C2's
    :class:`CallMetrics`, passed to the executor separately)."""

    precondition_failures: Counter
    rollbacks: Counter
    permit_wait: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, *,
               catalog: Catalog | None = None) -> ExecutionMetrics:
        if catalog is not None:
            Gauge("connector_revocations_applied",
                  "Catalog revocations this process applied (pub/sub).",
                  registry=registry).set_function(lambda: catalog.revocations_applied)
        return cls(
            precondition_failures=Counter(
                "connector_precondition_failures", "Steps not executed: a precondition "
                "was false.", ["capability_id", "condition"], registry=registry),
            rollbacks=Counter(
                "connector_rollback_count", "Failed executions by rollback strategy "
                "(none, revert, compensate).", ["capability_id", "strategy"],
                registry=registry),
            permit_wait=permit_wait_histogram(registry),
        )


@dataclass(frozen=True)
class _Run:
    """One request on its way through the steps."""

    request: CallRequest
    definition: CapabilityDefinition
    key_id: str
    spec: CapabilitySpec
    context: CallContext

    @property
    def names(self) -> dict[str, Any]:
        event = self.request.event
        payload = event.get("payload", {}) if isinstance(event, Mapping) else {}
        # The seed's conditions use JSON literals: "device.self_test_passed == true".
        return {"event": event, "payload": payload, "params": self.request.params,
                "true": True, "false": False, "null": None}

    def audit_fields(self, **extra: Any) -> dict[str, Any]:
        return {
            "capability": self.definition.id, "version": self.definition.version,
            "keyId": self.key_id, "rule": self.request.rule, "step": self.request.step,
            "idempotencyKey": self.request.idempotency_key,
            "params": dict(self.request.params), **extra,
        }


class SafeExecutor:
    """Implements :class:`CapabilityExecutor` (see the module doc)."""

    def __init__(
        self,
        catalog: Catalog,
        registry: CapabilityRegistry,
        *,
        redis: Redis,
        resources: Mapping[str, ResourcePolicy] | None = None,
        arbiter: ResourceArbiter | None = None,
        audit: AuditChain | None = None,
        breakers: BreakerBoard | None = None,
        metrics: ExecutionMetrics | None = None,
        call_metrics: CallMetrics | None = None,
        clock: Clock | None = None,
        logger: Logger | None = None,
        alerts_stream: str = ALERTS_STREAM,
    ) -> None:
        self._catalog = catalog
        self._registry = registry
        self._redis = redis
        self._resources = dict(resources or {})
        self._clock = clock or SystemClock()
        self._metrics = metrics
        self._arbiter = arbiter or ResourceArbiter(
            redis, clock=self._clock, wait_histogram=metrics.permit_wait if metrics else None)
        self._audit = audit or AuditChain(redis, clock=self._clock)
        # As RegistryExecutor: every capability (and target host) has its breaker.
        self._breakers = breakers if breakers is not None else BreakerBoard(
            redis=redis, clock=self._clock, logger=logger,
            gauge=call_metrics.breaker_state if call_metrics else None)
        self._deadlines = Deadlines()
        self._call_metrics = call_metrics
        self._logger = logger or get_logger(component="safe_executor")
        self._alerts_stream = alerts_stream

    async def execute(self, request: CallRequest) -> Any:
        run = await self._resolve(request)                                # steps 1-2
        state = await self._state_before(run)
        skipped = await self._check_preconditions(run, state, None)       # step 3
        if skipped is not None:
            return skipped
        resource, policy = self._resource(run)
        if policy is None:
            return await self._act(run, None, state)
        try:
            async with self._arbiter.permit(
                resource, wait_timeout_s=policy.wait_timeout_s,
                max_holders=policy.max_holders, ttl_s=policy.ttl_s,
            ) as permit:                                                    # step 4
                state = await self._state_before(run)
                skipped = await self._check_preconditions(run, state, permit)
                if skipped is not None:
                    return skipped
                return await self._act(run, permit, state)                # steps 5-7
        except PermitTimeoutError as exc:
            await self._audit.append("permit_timeout", run.audit_fields(
                resource=exc.resource, reason=str(exc)))
            raise

    # -- steps 1 and 2 ---------------------------------------------------------

    async def _resolve(self, request: CallRequest) -> _Run:
        try:
            verified = await self._catalog.resolve(request.capability_id,
                                                   request.version_range)
            spec = self._spec_for(verified.definition)
        except (CatalogError, UnknownCapabilityError) as exc:  # the latter: registry misses
            await self._audit.append("refused", {
                "capability": request.capability_id, "versionRange": request.version_range,
                "rule": request.rule, "step": request.step,
                "idempotencyKey": request.idempotency_key, "reason": str(exc),
                "error": type(exc).__name__})
            self._logger.warning("capability refused", capability=request.capability_id,
                                 rule=request.rule, step=request.step, reason=str(exc))
            raise DeadLetterError(str(exc), rule=request.rule, step=request.step) from exc
        definition = verified.definition
        context = CallContext(
            idempotency_key=request.idempotency_key, event=request.event, redis=self._redis,
            clock=self._clock, logger=self._logger.bind(
                capability=definition.key, rule=request.rule, step=request.step),
        )
        return _Run(request, definition, verified.key_id, spec, context)

    def _spec_for(self, definition: CapabilityDefinition) -> CapabilitySpec:
        if "@" in definition.handler:
            return self._registry.get(definition.handler)
        return self._registry.resolve(definition.handler)

    # -- step 3 ----------------------------------------------------------------

    async def _state_before(self, run: _Run) -> Mapping[str, Any]:
        """The state the preconditions see; a state that cannot be read for good is
        recorded before the entry is dead-lettered."""
        try:
            return await self._read_state(run, run.context)
        except DeadLetterError as exc:
            await self._audit.append("failed", run.audit_fields(
                stage="read_state", reason=exc.reason, strategy="none"))
            raise

    async def _read_state(self, run: _Run, context: CallContext) -> Mapping[str, Any]:
        if run.spec.read_state is None:
            return {}
        try:
            return dict(await run.spec.read_state(run.request.params, context))
        except Exception as exc:
            if is_retryable(exc):
                raise
            raise DeadLetterError(f"capability {run.definition.key}: cannot read the "
                                  f"state: {exc}", rule=run.request.rule,
                                  step=run.request.step) from exc

    async def _check_preconditions(self, run: _Run, state: Mapping[str, Any],
                                   permit: Permit | None) -> dict[str, Any] | None:
        """None if every precondition holds, else the recorded "not executed" outcome."""
        names = {**run.names, "state": state}
        for condition in run.definition.preconditions:
            try:
                holds = self._holds(run, condition, names, "precondition")
            except DeadLetterError as exc:
                await self._audit.append("precondition_failed", run.audit_fields(
                    condition=condition.check, error=exc.reason, state=state))
                raise
            if not holds:
                return await self._not_executed(run, condition, state, permit)
        return None

    def _holds(self, run: _Run, condition: Condition, names: Mapping[str, Any],
               kind: str) -> bool:
        where = f"capability {run.definition.key} {kind}"
        try:
            return Expression(condition.check, where=where).is_true(names)
        except ExpressionError as exc:
            raise DeadLetterError(str(exc), rule=run.request.rule,
                                  step=run.request.step) from exc

    async def _not_executed(self, run: _Run, condition: Condition, state: Mapping[str, Any],
                            permit: Permit | None = None) -> dict[str, Any]:
        if self._metrics is not None:
            self._metrics.precondition_failures.labels(run.definition.id,
                                                       condition.check).inc()
        record = await self._audit.append("precondition_failed", run.audit_fields(
            condition=condition.check, description=condition.description, state=state,
            resource=permit.resource if permit else None))
        run.context.logger.info("precondition false, not executed",
                                condition=condition.check)
        return {"executed": False, "outcome": "precondition_failed",
                "condition": condition.check, "auditSeq": record.seq}

    def _resource(self, run: _Run) -> tuple[str, ResourcePolicy | None]:
        """The resource the call drives: configured per capability id, else declared
        by the capability (``CapabilitySpec.resource``), else named by the call's
        ``resource`` parameter; none = no permit needed."""
        policy = self._resources.get(run.definition.id) or run.spec.resource
        if policy is None and "resource" in run.request.params:
            policy = ResourcePolicy("{resource}")
        if policy is None:
            return "", None
        try:
            return policy.resource_for(run.request.params), policy
        except ValueError as exc:
            raise DeadLetterError(f"capability {run.definition.key}: {exc}",
                                  rule=run.request.rule, step=run.request.step) from exc

    # -- steps 5 to 7 ----------------------------------------------------------

    async def _act(self, run: _Run, permit: Permit | None, before: Mapping[str, Any]) -> Any:
        context = replace(run.context,
                          fencing_token=permit.fencing_token if permit else None)
        fenced = {"resource": permit.resource if permit else None,
                  "fencingToken": context.fencing_token}
        started = self._clock.monotonic()
        try:
            result = await invoke(run.spec, run.request.params, context,
                                  breakers=self._breakers,
                                  policy=policy_for(run.spec.policy, run.request),
                                  metrics=self._call_metrics, deadlines=self._deadlines)
        except Exception as exc:
            if _caused_by(exc, CircuitOpenError):
                raise  # never attempted: nothing to undo
            await self._fail(run, context, before, fenced, stage="handler",
                             reason=str(exc), stale=_caused_by(exc, StaleFencingTokenError))
            raise
        problem = await self._postconditions(run, context, result)
        if problem is not None:
            strategy, ok = await self._fail(run, context, before, fenced,
                                            stage="postcondition", reason=problem)
            raise RolledBackError(
                f"capability {run.definition.key}: {problem}; rollback {strategy} "
                f"{'done' if ok else 'FAILED'}", strategy=strategy, rollback_ok=ok,
                rule=run.request.rule, step=run.request.step)
        try:
            after: Mapping[str, Any] = await self._read_state(run, context)
        except Exception as exc:
            # The step is done and verified: a failed read-back for the record must
            # not make the entry come back and act again.
            after = {"error": str(exc)}
        await self._audit.append("executed", run.audit_fields(
            **fenced, result=result, stateBefore=before, stateAfter=after,
            durationMs=round((self._clock.monotonic() - started) * 1000, 1)))
        return result

    async def _postconditions(self, run: _Run, context: CallContext, result: Any) -> str | None:
        for condition in run.definition.postconditions:
            problem = await self._await_condition(run, context, condition, result)
            if problem is not None:
                return problem
        return None

    async def _await_condition(self, run: _Run, context: CallContext, condition: Condition,
                               result: Any) -> str | None:
        timeout_ms = condition.timeout_ms or 0
        deadline = self._clock.monotonic() + timeout_ms / 1000
        last: str = ""
        while True:
            try:
                state = await self._read_state(run, context)
                names = {**run.names, "state": state, "result": result}
                if self._holds(run, condition, names, "postcondition"):
                    return None
                last = f"state {orjson.dumps(state, default=str).decode()}"
            except DeadLetterError as exc:
                return f"postcondition {condition.check!r} cannot be checked: {exc.reason}"
            except Exception as exc:
                # The target may be busy right after the action: keep polling.
                last = f"reading the state failed: {exc}"
            remaining_s = deadline - self._clock.monotonic()
            if remaining_s <= 0:
                label = f" ({condition.description})" if condition.description else ""
                return (f"postcondition {condition.check!r}{label} not true within "
                        f"{timeout_ms} ms (last {last})")
            await self._clock.sleep(min(condition.poll_interval_ms / 1000, remaining_s))

    # -- failure and rollback ----------------------------------------------------

    async def _fail(self, run: _Run, context: CallContext, before: Mapping[str, Any],
                    fenced: Mapping[str, Any], *, stage: str, reason: str,
                    stale: bool = False) -> tuple[str, bool]:
        strategy = run.definition.rollback_strategy
        label = _strategy_label(strategy, run.definition.id)
        if stale:
            # A newer permit holder drives the resource now: undoing would fight it.
            label = "none"
        record = await self._audit.append("failed", run.audit_fields(
            **fenced, stage=stage, reason=reason, strategy=label, stateBefore=before))
        if self._metrics is not None:
            self._metrics.rollbacks.labels(run.definition.id, label).inc()
        ok = True
        if isinstance(strategy, RollbackAction) and label != "none":
            ok = await self._roll_back(run, context, strategy, label, before, fenced)
        alert = label == "none" or not ok or (
            isinstance(strategy, RollbackAction) and strategy.alert_on_rollback)
        if alert:
            await self._alert(run, stage=stage, reason=reason, strategy=label,
                              rollback_ok=ok, audit_seq=record.seq)
        return label, ok

    async def _roll_back(self, run: _Run, context: CallContext, action: RollbackAction,
                         label: str, before: Mapping[str, Any],
                         fenced: Mapping[str, Any]) -> bool:
        # Undoing with the same capability keeps its version unless a range is given.
        version_range = action.version_range or (
            run.definition.version if action.action == run.definition.id else None)
        error: str | None = None
        target = action.action
        params: dict[str, Any] = {}
        try:
            params = _rollback_params(run, action, label, before)
            verified = await self._catalog.resolve(action.action, version_range)
            target = verified.definition.key
            spec = self._spec_for(verified.definition)
            await invoke(spec, params, replace(
                context, idempotency_key=f"{run.request.idempotency_key}:rollback"),
                breakers=self._breakers, metrics=self._call_metrics,
                deadlines=self._deadlines)
        except Exception as exc:
            error = str(exc)
            context.logger.error("rollback failed", action=target, error=error)
        await self._audit.append("rollback", run.audit_fields(
            **fenced, strategy=label, action=target, rollbackParams=params,
            ok=error is None, error=error))
        return error is None

    async def _alert(self, run: _Run, *, stage: str, reason: str, strategy: str,
                     rollback_ok: bool, audit_seq: int) -> None:
        event = {
            "type": "capability.rollback" if strategy != "none" else "capability.failure",
            "source": "safe-executor", "timestamp": iso_utc(self._clock.time()),
            "priority": "critical" if not rollback_ok else "high",
            "correlation_id": run.request.idempotency_key,
            "payload": {"capability": run.definition.id, "version": run.definition.version,
                        "rule": run.request.rule, "step": run.request.step, "stage": stage,
                        "reason": reason, "strategy": strategy, "rollbackOk": rollback_ok,
                        "params": dict(run.request.params), "auditSeq": audit_seq},
        }
        await self._redis.xadd(
            self._alerts_stream,
            {"schema": "base-event/1", "event": orjson.dumps(event, default=str).decode()},
            maxlen=DEFAULT_STREAM_MAXLEN, approximate=True)


def _strategy_label(strategy: object, capability_id: str) -> str:
    if not isinstance(strategy, RollbackAction):
        return "none"
    return "revert" if strategy.action == capability_id else "compensate"


def _rollback_params(run: _Run, action: RollbackAction, label: str,
                     before: Mapping[str, Any]) -> dict[str, Any]:
    """The strategy's parameters, templated (``{{ params.valveId }}``) over the step's
    names and the state read before it; a value ``"previous"`` is that state's value
    under the same name (seed 001's ``{"version": "previous"}``). A revert puts them
    over the step's own parameters; a compensation gets them alone."""
    where = f"capability {run.definition.key} rollbackStrategy.params"
    rendered = Template(action.params, where=where).render({**run.names, "state": before})
    for name, value in action.params.items():
        if value == "previous" and name in before:
            rendered[name] = before[name]
    return {**run.request.params, **rendered} if label == "revert" else dict(rendered)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
