"""The event handler that runs rules: entry → event → matching rules → steps.

For each delivered entry (:class:`~framework.consuming.delivery.Delivery`) the handler
parses the event (:func:`~framework.consuming.events.parse_event`; an invalid one is a
dead letter), selects the rules of its stream that match, and runs each rule's
steps in order:

* a ``call`` step goes through the :class:`CapabilityExecutor`
  with the idempotency key ``stream:origin_id:rule:step`` (``origin_id``: the entry id,
  or for a replayed dead letter the id of the entry it replays);
* an ``emit`` step adds a base event to a stream;
* an ``if`` step runs its ``then`` or ``else`` steps.

Each completed call or emit is recorded in ``fleet:steps:{stream}:{identity}``
(field ``rule:step``, its result as JSON, with a TTL; ``identity``: the event's
(connector, item_id, version), else ``origin_id``); a redelivered entry skips
the recorded steps (their results are still readable as ``steps.<id>``) and
resumes at the first that had not completed (an entry's first delivery skips
that read: nothing can be recorded yet). An emit and its record are one
Lua script, so a crash never emits twice. A call's record is written before
the entry's next step starts, or before the handler raises; the last one is
returned to the consumer (:class:`~framework.consuming.delivery.AckWrite`), which writes
it in the script that acknowledges the entry: the same guarantee (recorded
before acknowledged) for one round trip less. The reads and writes of the
records of the entries in flight go to Redis together
(:class:`~framework.consuming.rules.step_records.StepRecords`).

The records live only as long as they can matter: when the entry is acknowledged,
the same script deletes them (keyed by the entry id) or shortens their TTL to
``identity_ttl_s`` (keyed by the event's identity: a copy republished after a
failover rollback within it runs nothing again, and reads the records even on its
first delivery). A dead-lettered entry keeps them (``step_ttl_s``) for ``dlq replay``.

One rule's failure does not stop the others: every matching rule runs, then
the handler raises the first retryable failure (the entry comes back and only
the unfinished steps run again) or else the first dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.consuming.delivery import AckWrite, Delivery
from framework.consuming.events import (
    BaseEventV1,
    InboundEvent,
    describe_validation_error,
    parse_event,
)
from framework.consuming.rules.model import BranchStep, CallStep, EmitStep, Rule, RuleSet, Step
from framework.consuming.rules.step_records import StepRecords
from framework.core.errors import DeadLetterError, ExpressionError
from framework.core.keys import (
    DEFAULT_STEP_IDENTITY_TTL_S,
    DEFAULT_STEP_RECORD_TTL_S,
    DEFAULT_STREAM_MAXLEN,
    emitted_key,
    steps_key,
)
from framework.core.logs import Logger, get_logger
from framework.core.scripts import lua
from framework.core.slots import is_cluster, same_slot

__all__ = ["RulesHandler"]


class _Run:
    """One entry's execution: its event, the names templates see, what is done."""

    def __init__(self, delivery: Delivery, event: InboundEvent) -> None:
        self.delivery = delivery
        self.event = event
        self.record = event.as_dict()
        self.done: Mapping[str, str] = {}
        # A completed call's record not yet in Redis: written before anything else runs.
        self.unwritten: AckWrite | None = None
        self.names: dict[str, Any] = {
            "event": self.record, "payload": event.payload, "source": event.source,
            "type": event.type, "stream": event.stream, "steps": {},
        }
        # Computed once: the step key, every idempotency key and the records' lifetime
        # derive from it.
        self.identity = identity = delivery.identity
        self.has_identity = identity != delivery.origin_id
        self.key = steps_key(delivery.stream, identity)


class RulesHandler:
    """Implements :class:`~framework.consuming.delivery.EventHandler` over a :class:`RuleSet`."""

    def __init__(
        self,
        rules: RuleSet,
        executor: CapabilityExecutor,
        *,
        redis: Redis,
        logger: Logger | None = None,
        step_ttl_s: int = DEFAULT_STEP_RECORD_TTL_S,
        stream_max_len: int = DEFAULT_STREAM_MAXLEN,
        identity_ttl_s: int = DEFAULT_STEP_IDENTITY_TTL_S,
    ) -> None:
        self._rules = rules
        self._executor = executor
        self._redis = redis
        self._logger = logger or get_logger(component="rules")
        self._step_ttl_s = step_ttl_s
        self._stream_max_len = stream_max_len
        self._identity_ttl_s = identity_ttl_s
        self._emit = redis.register_script(lua("framework.consuming", "emit_step"))
        self._cluster = is_cluster(redis)
        self._records = StepRecords(redis, ttl_s=step_ttl_s)

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def replace_rules(self, rules: RuleSet) -> None:
        """Swap the rules (SIGHUP, file change); entries in flight finish on the old ones."""
        self._rules = rules

    async def handle(self, delivery: Delivery) -> Sequence[AckWrite] | None:
        run = _Run(delivery, parse_event(delivery))
        matching = [rule for rule in self._rules.candidates(delivery.stream)
                    if self._matches(rule, run)]
        if not matching:
            return None
        if _may_have_run(delivery, has_identity=run.has_identity):
            run.done = await self._records.completed(run.key)
        failures: list[Exception] = []
        for rule in matching:
            run.names["steps"] = {}
            try:
                await self._run_steps(rule, rule.steps, run)
            except Exception as exc:
                self._logger.warning("rule_failed", rule=rule.name, stream=delivery.stream,
                                     entry_id=delivery.entry_id, error=str(exc),
                                     dead_letter=isinstance(exc, DeadLetterError))
                failures.append(exc)
        if failures:
            await self._write_unwritten(run)
            retryable = [exc for exc in failures if not isinstance(exc, DeadLetterError)]
            raise (retryable or failures)[0]
        return (self._settling_write(run),)

    def _settling_write(self, run: _Run) -> AckWrite:
        """The last record, if any, and the records' lifetime once the entry is acknowledged."""
        settle_ttl_s = self._identity_ttl_s if run.has_identity else 0
        last = run.unwritten
        if last is None:
            return AckWrite(run.key, "", "", self._step_ttl_s, settle_ttl_s)
        return AckWrite(last.key, last.field, last.value, last.ttl_s, settle_ttl_s)

    def _matches(self, rule: Rule, run: _Run) -> bool:
        try:
            return rule.match.matches(run.event, run.names)
        except ExpressionError as exc:
            # The event lacks what the condition reads: the rule is not for it.
            self._logger.info("rule_condition_failed", rule=rule.name,
                              entry_id=run.event.entry_id, error=str(exc))
            return False

    async def _run_steps(self, rule: Rule, steps: tuple[Step, ...], run: _Run) -> None:
        for step in steps:
            if isinstance(step, BranchStep):
                branch = step.then if self._holds(rule, step, run) else step.otherwise
                await self._run_steps(rule, branch, run)
                continue
            field = f"{rule.name}:{step.id}"
            recorded = run.done.get(field)
            if recorded is not None:
                run.names["steps"][step.id] = orjson.loads(recorded)
                continue
            await self._write_unwritten(run)
            if isinstance(step, CallStep):
                result = await self._call(rule, step, run, field)
            else:
                result = await self._emit_event(rule, step, run, field)
            run.names["steps"][step.id] = result

    def _holds(self, rule: Rule, step: BranchStep, run: _Run) -> bool:
        try:
            return step.condition.is_true(run.names)
        except ExpressionError as exc:
            raise DeadLetterError(f"rule {rule.name}, step {step.id}: {exc}",
                                  rule=rule.name, step=step.id) from exc

    async def _call(self, rule: Rule, step: CallStep, run: _Run, field: str) -> Any:
        params = _render(rule, step, step.params.render, run.names)
        request = CallRequest(
            capability_id=step.capability_id,
            version_range=step.version_range,
            params=params,
            # Delivery.idempotency_key, from the identity computed once.
            idempotency_key=f"{run.delivery.stream}:{run.identity}:{field}",
            event=run.record,
            rule=rule.name,
            step=step.id,
            timeout_ms=step.timeout_ms,
            on_open=step.on_open,
            hosts=step.hosts,
        )
        try:
            result = await self._executor.execute(request)
        except DeadLetterError as exc:
            raise DeadLetterError(f"rule {rule.name}, step {step.id}: {exc.reason}",
                                  rule=rule.name, step=step.id, attempts=exc.attempts) from exc
        encoded = orjson.dumps(result, default=str)
        run.unwritten = AckWrite(run.key, field, encoded.decode(), self._step_ttl_s)
        self._logger.debug("step_done", rule=rule.name, step=step.id,
                           entry_id=run.delivery.entry_id)
        return orjson.loads(encoded)

    async def _write_unwritten(self, run: _Run) -> None:
        if run.unwritten is not None:
            write, run.unwritten = run.unwritten, None
            await self._records.record(write.key, write.field, write.value)

    async def _emit_event(self, rule: Rule, step: EmitStep, run: _Run, field: str) -> Any:
        stream = _render(rule, step, step.stream.render, run.names)
        body = _render(rule, step, step.event.render, run.names)
        body.setdefault("source", f"rule:{rule.name}")
        body.setdefault("correlation_id", run.event.correlation_id or run.event.event_id)
        try:
            event = BaseEventV1.model_validate(body, strict=False)
        except ValidationError as exc:
            raise DeadLetterError(f"rule {rule.name}, step {step.id}: the emitted event is "
                                  f"invalid: {describe_validation_error(exc)}",
                                  rule=rule.name, step=step.id) from exc
        target = str(stream)
        record_key = self._emit_record_key(target, run.key)
        recorded = await self._emit(
            keys=[target, record_key],
            args=[self._stream_max_len, field, self._step_ttl_s, "base-event/1",
                  event.model_dump_json(exclude_none=True)],
        )
        if record_key != run.key:
            # Recorded in the target's slot (emitted once there); the entry's own record
            # follows, as a call's does, so the next steps and a redelivery see it.
            run.unwritten = AckWrite(run.key, field, str(recorded), self._step_ttl_s)
        return orjson.loads(recorded)

    def _emit_record_key(self, target: str, steps: str) -> str:
        """Where an emit is recorded, atomically with its XADD: with the entry's steps,
        or on a Cluster where they live in another slot, in the target's slot."""
        if not self._cluster or same_slot((target, steps)):
            return steps
        return emitted_key(target, steps)


def _may_have_run(delivery: Delivery, *, has_identity: bool) -> bool:
    """False on an entry's first delivery: no earlier run can have recorded a step, so
    the record is not read. Every redelivery (XAUTOCLAIM, XCLAIM) counts, and a replayed
    dead letter (``origin_id`` of an earlier entry) is a first delivery of a new entry
    whose steps are recorded under the old one: both read it, as does an event with an
    identity (a republished copy of an event another entry ran). (Rewinding the group
    itself, XGROUP SETID or re-creating it at an old id, delivers old entries as new:
    count 1, they run again as the operator asked.)"""
    return delivery.delivery_count > 1 or has_identity or delivery.origin_id != delivery.entry_id


def _render(rule: Rule, step: Step, render: Callable[[Mapping[str, Any]], Any],
            names: Mapping[str, Any]) -> Any:
    try:
        return render(names)
    except ExpressionError as exc:
        # The event lacks what the template reads: retrying the same event will not help.
        raise DeadLetterError(f"rule {rule.name}, step {step.id}: {exc}",
                              rule=rule.name, step=step.id) from exc
