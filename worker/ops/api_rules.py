"""``/api/v1/rules``: check a rules file, and try the rules on a sample event.

Both read only: nothing is called, emitted or written. They take the process's
rules file (RULES_PATH, else rules.json beside connectors.json) or a rules
document in the body (``rules``). A document from the body gets no environment
for its ``${VAR}`` (only ``${VAR:-default}``): a caller must not read the
server's environment through it. Values the file took from the environment are
redacted in every answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from framework.consuming import (
    BranchStep,
    CallStep,
    RuleSet,
    Step,
    dry_run,
    load_rules,
    parse_rules,
)
from framework.core import ConfigError
from worker.ops.api_streams import event_fields
from worker.ops.api_support import (
    ApiDeps,
    api_error,
    checked_name,
    json_body,
    json_response,
    requires,
)
from worker.ops.tokens import Role


def rules_routes(deps: ApiDeps) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/api/v1/rules/check")
    @requires(Role.VIEWER)
    async def check(request: web.Request) -> web.Response:
        body = await json_body(request)
        try:
            rule_set = _rules(deps, body)
        except ConfigError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            return json_response({"ok": False, "problems": deps.secrets.current.redact(problems)})
        return json_response(rule_set.secrets.redact({
            "ok": True, "source": rule_set.source, "problems": [],
            "streams": rule_set.streams, "rules": [_summary(rule) for rule in rule_set.rules]}))

    @routes.post("/api/v1/rules/dry-run")
    @requires(Role.VIEWER)
    async def try_rules(request: web.Request) -> web.Response:
        body = await json_body(request)
        stream = checked_name(body.get("stream"), "request body: stream")
        fields = event_fields(body)
        try:
            rule_set = _rules(deps, body)
        except ConfigError as exc:
            raise api_error(400, str(exc)) from None
        return json_response(rule_set.secrets.redact(dry_run(rule_set, stream, fields)))

    return routes


def _rules(deps: ApiDeps, body: dict[str, Any]) -> RuleSet:
    if "rules" in body:
        return parse_rules(body["rules"], source="request body: rules", env={})
    path = deps.options.rules_path
    if path is None:
        raise ConfigError("no rules file is configured (RULES_PATH)")
    return load_rules(Path(path))


def _summary(rule: Any) -> dict[str, Any]:
    calls = [f"{call.capability_id}@{call.version_range or '*'}" for call in _calls(rule.steps)]
    return {"name": rule.name, "streams": sorted(rule.match.streams), "calls": calls,
            "steps": len(rule.steps)}


def _calls(steps: tuple[Step, ...]) -> list[CallStep]:
    found: list[CallStep] = []
    for step in steps:
        if isinstance(step, CallStep):
            found.append(step)
        elif isinstance(step, BranchStep):
            found.extend(_calls(step.then) + _calls(step.otherwise))
    return found
