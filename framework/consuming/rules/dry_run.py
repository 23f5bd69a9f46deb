"""A rule set tried on a sample entry, with no side effect: which rules match, which
steps would run, and the parameters each would get.

Nothing is called, emitted or recorded; Redis is not touched. The steps' results
are unknown in a dry run, so a template or condition that reads ``steps.<id>``
cannot be evaluated: the step says so (``error``), and a branch whose condition
cannot be decided lists both sides (``undetermined``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.consuming.delivery import Delivery
from framework.consuming.events import parse_event
from framework.consuming.rules.model import BranchStep, CallStep, Rule, RuleSet, Step
from framework.core.errors import DeadLetterError, ExpressionError

__all__ = ["dry_run"]

_SAMPLE_ENTRY_ID = "0-1"


def dry_run(rules: RuleSet, stream: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """``{"event": ..., "rules": [{"rule", "matched", "reason", "steps"}]}``, or
    ``{"event": None, "invalid": reason}`` when no event contract fits the fields."""
    delivery = Delivery(stream=stream, entry_id=_SAMPLE_ENTRY_ID, fields=dict(fields),
                        group="dry-run", consumer="dry-run")
    try:
        event = parse_event(delivery)
    except DeadLetterError as exc:
        return {"event": None, "invalid": exc.reason, "rules": []}
    record = event.as_dict()
    names: dict[str, Any] = {"event": record, "payload": event.payload, "source": event.source,
                             "type": event.type, "stream": event.stream, "steps": {}}
    results = [_try_rule(rule, event, names) for rule in rules.candidates(stream)]
    return {"event": record, "rules": results}


def _try_rule(rule: Rule, event: Any, names: dict[str, Any]) -> dict[str, Any]:
    try:
        matched = rule.match.matches(event, names)
    except ExpressionError as exc:
        return {"rule": rule.name, "matched": False, "reason": f"condition failed: {exc}",
                "steps": []}
    if not matched:
        return {"rule": rule.name, "matched": False,
                "reason": "the event does not satisfy match", "steps": []}
    return {"rule": rule.name, "matched": True, "reason": None,
            "steps": _plan(rule.steps, names)}


def _plan(steps: tuple[Step, ...], names: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_plan_step(step, names) for step in steps]


def _plan_step(step: Step, names: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(step, BranchStep):
        try:
            holds = step.condition.is_true(names)
        except ExpressionError as exc:
            return {"id": step.id, "kind": "if", "condition": step.condition.source,
                    "undetermined": str(exc), "then": _plan(step.then, names),
                    "else": _plan(step.otherwise, names)}
        branch = step.then if holds else step.otherwise
        return {"id": step.id, "kind": "if", "condition": step.condition.source,
                "holds": holds, "steps": _plan(branch, names)}
    if isinstance(step, CallStep):
        planned: dict[str, Any] = {"id": step.id, "kind": "call",
                                   "capability": step.capability_id,
                                   "version": step.version_range}
        return _rendered(planned, "params", lambda: step.params.render(names))
    planned = {"id": step.id, "kind": "emit"}
    planned = _rendered(planned, "stream", lambda: step.stream.render(names))
    return _rendered(planned, "event", lambda: step.event.render(names))


def _rendered(planned: dict[str, Any], key: str, render: Any) -> dict[str, Any]:
    try:
        planned[key] = render()
    except ExpressionError as exc:
        planned[key] = None
        planned.setdefault("error", str(exc))
    return planned
