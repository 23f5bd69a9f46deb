"""Reading ``rules.json`` into a :class:`~framework.consuming.rules.model.RuleSet`.

``${VAR}`` and ``${VAR:-default}`` in strings are replaced when the file loads
(:mod:`framework.core.substitution`, the syntax of connectors.json). Every problem
of the file is reported at once, each naming the rule and its position
(``rules[2].steps[1].if``), plus the character offset for an expression and the
line and column for invalid JSON.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from framework.consuming.rules.absence import expand_absence
from framework.consuming.rules.matching import OPERATORS, FieldCondition, Match
from framework.consuming.rules.model import BranchStep, CallStep, EmitStep, Rule, RuleSet, Step
from framework.consuming.rules.templating import Template
from framework.core.errors import ExpressionError, RulesFileError, VersionError
from framework.core.expressions import Expression
from framework.core.host_policy import HostPolicy
from framework.core.keys import DEFAULT_OUTPUT_STREAM
from framework.core.secrets import Secrets
from framework.core.substitution import substitute
from framework.core.versions import VersionRange

_MATCH_SHORTHANDS = ("stream", "streams", "source", "type", "if")

def load_rules(path: Path | str, *, env: Mapping[str, str] | None = None) -> RuleSet:
    """Parse and check the rules file; :class:`RulesFileError` lists every problem.

    ``${VAR}`` and ``${VAR:-default}`` in strings are replaced from ``env``
    (default: the process environment) when the file loads, as in connectors.json.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(source, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesFileError(
            source, [f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
        ) from None
    return parse_rules(document, source=source, env=os.environ if env is None else env)


def parse_rules(document: Any, *, source: str = "<rules>",
                env: Mapping[str, str] | None = None) -> RuleSet:
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RulesFileError(source, ['expected an object {"version": 1, "rules": [...]}'])
    if document.get("version", 1) != 1:
        problems.append(f"version: unsupported version {document['version']!r} (expected 1)")
    for key in sorted(set(document) - {"version", "rules", "$schema", "description"}):
        problems.append(f"{key}: unknown key")
    rules: list[Rule] = []
    names: set[str] = set()
    taken: set[str] = set()  # the secrets: every value a ${VAR} took from env
    for index, written in enumerate(document["rules"]):
        # An absence trigger stands for two plain rules (framework.consuming.rules.absence).
        expanded, absence_problems = expand_absence(written, f"rules[{index}]")
        problems.extend(absence_problems)
        for raw in expanded:
            parser = _RuleParser(f"rules[{index}]")
            rule = parser.rule(parser.substituted(raw, env or {}, f"rules[{index}]", taken))
            problems.extend(parser.problems)
            if rule is None:
                continue
            if rule.name in names:
                problems.append(f"rule {rule.name} (rules[{index}].name): duplicate rule name")
            names.add(rule.name)
            rules.append(rule)
    secrets = Secrets.of(taken)
    if problems:
        raise RulesFileError(source, [secrets.redact_text(p) for p in problems])
    return RuleSet.of(rules, source, secrets)


class _RuleParser:
    """Builds one rule, collecting its problems instead of stopping at the first."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.name = where
        self.problems: list[str] = []
        self._step_ids: set[str] = set()

    def _problem(self, where: str, message: str) -> None:
        self.problems.append(f"rule {self.name} ({where}): {message}")

    def substituted(self, value: Any, env: Mapping[str, str], where: str,
                    taken: set[str]) -> Any:
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            self.name = value["name"]

        def missing(variable: str, path: str) -> str:
            self._problem(path, f"environment variable {variable} is not set "
                                f"(set it, or write ${{{variable}:-default}})")
            return "${" + variable + "}"

        return substitute(value, env, missing, where, taken)

    def rule(self, raw: Any) -> Rule | None:
        if not isinstance(raw, dict):
            self._problem(self.where, "expected an object")
            return None
        name = raw.get("name")
        if isinstance(name, str) and name.strip():
            self.name = name
        else:
            self._problem(f"{self.where}.name", "required, a non-empty string")
        self._unknown_keys(raw, {"name", "description", "match", "steps", "enabled"}, self.where)
        match = self._match(raw.get("match", {}), f"{self.where}.match")
        steps = self._steps(raw.get("steps"), f"{self.where}.steps", "steps")
        if raw.get("steps") == []:
            self._problem(f"{self.where}.steps", "at least one step is required")
        if self.problems or match is None or raw.get("enabled", True) is False:
            return None
        return Rule(self.name, match, steps, str(raw.get("description", "")))

    def _unknown_keys(self, raw: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in sorted(set(raw) - known):
            self._problem(f"{where}.{key}", "unknown key")

    def _match(self, raw: Any, where: str) -> Match | None:
        if not isinstance(raw, dict):
            self._problem(where, "expected an object")
            return None
        streams = self._names(raw.get("streams", raw.get("stream")), f"{where}.streams")
        fields: list[FieldCondition] = []
        for key, spec in raw.items():
            if key in _MATCH_SHORTHANDS:
                continue
            if not key.startswith("payload.") and key not in ("priority", "correlation_id"):
                self._problem(f"{where}.{key}", "unknown key (field conditions start with "
                                                "'payload.')")
                continue
            fields.extend(self._conditions(key, spec, f"{where}.{key}"))
        condition = self._expression(raw.get("if"), f"{where}.if")
        return Match(
            streams=frozenset(streams or [DEFAULT_OUTPUT_STREAM]),
            sources=self._optional_names(raw, "source", where),
            types=self._optional_names(raw, "type", where),
            fields=tuple(fields),
            condition=condition,
        )

    def _optional_names(self, raw: Mapping[str, Any], key: str,
                        where: str) -> frozenset[str] | None:
        if key not in raw:
            return None
        return frozenset(self._names(raw[key], f"{where}.{key}") or ())

    def _names(self, raw: Any, where: str) -> list[str] | None:
        if raw is None:
            return None
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list) or not values or not all(
            isinstance(value, str) and value for value in values
        ):
            self._problem(where, "expected a non-empty string or list of strings")
            return None
        return list(values)

    def _conditions(self, key: str, spec: Any, where: str) -> list[FieldCondition]:
        path = tuple(key.split("."))
        if not isinstance(spec, dict):
            return [FieldCondition(path, "eq", spec)]
        conditions = []
        for operator, operand in spec.items():
            if operator not in OPERATORS:
                self._problem(f"{where}.{operator}",
                              f"unknown operator (known: {', '.join(OPERATORS)})")
            elif operator in ("in", "not_in") and not isinstance(operand, list):
                self._problem(f"{where}.{operator}", "expected a list")
            elif operator == "matches" and not self._regex(operand, f"{where}.{operator}"):
                continue
            else:
                conditions.append(FieldCondition(path, operator, operand))
        return conditions

    def _regex(self, operand: Any, where: str) -> bool:
        try:
            re.compile(operand)
        except (re.error, TypeError) as exc:
            self._problem(where, f"invalid regular expression: {exc}")
            return False
        return True

    def _expression(self, raw: Any, where: str) -> Expression | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            self._problem(where, "expected an expression (a string)")
            return None
        try:
            return Expression(raw, where=f"rule {self.name}, {where}")
        except ExpressionError as exc:
            at = f" at position {exc.position}" if exc.position is not None else ""
            self._problem(where, f"{exc.message}{at} in {raw!r}")
            return None

    def _template(self, raw: Any, where: str, url_keys: tuple[str, ...] = ()) -> Template:
        try:
            return Template(raw, where=where, url_keys=url_keys)
        except ExpressionError as exc:
            at = f" at position {exc.position}" if exc.position is not None else ""
            self._problem(exc.where, f"{exc.message}{at} in {exc.expression!r}")
            return Template(None, where=where)

    def _steps(self, raw: Any, where: str, label: str) -> tuple[Step, ...]:
        if not isinstance(raw, list):
            self._problem(where, "expected a list of steps")
            return ()
        steps = (self._step(item, f"{where}[{i}]", f"{label}[{i}]") for i, item in
                 enumerate(raw))
        return tuple(step for step in steps if step is not None)

    def _step(self, raw: Any, where: str, label: str) -> Step | None:
        kinds = [kind for kind in ("call", "emit", "if") if isinstance(raw, dict) and kind in raw]
        if len(kinds) != 1:
            self._problem(where, "a step has exactly one of 'call', 'emit' or 'if'")
            return None
        step_id = raw.get("id", label)
        if not isinstance(step_id, str) or not step_id:
            self._problem(f"{where}.id", "expected a non-empty string")
            return None
        if step_id in self._step_ids:
            self._problem(f"{where}.id", f"duplicate step id {step_id!r}")
        self._step_ids.add(step_id)
        if kinds[0] == "call":
            return self._call(raw, where, step_id)
        if kinds[0] == "emit":
            return self._emit(raw, where, step_id)
        return self._branch(raw, where, step_id, label)

    def _call(self, raw: Mapping[str, Any], where: str, step_id: str) -> CallStep:
        self._unknown_keys(raw, {"call", "version", "params", "id", "timeoutMs", "onOpen",
                                 "description", "allowHosts"}, where)
        capability, version = raw["call"], raw.get("version")
        timeout_ms, on_open = raw.get("timeoutMs"), raw.get("onOpen")
        if not isinstance(capability, str) or not capability:
            self._problem(f"{where}.call", "expected a capability id")
        if version is not None:
            self._version_range(version, f"{where}.version")
        if timeout_ms is not None and (not isinstance(timeout_ms, int) or timeout_ms <= 0):
            self._problem(f"{where}.timeoutMs", "expected a positive integer (milliseconds)")
        if on_open not in (None, "wait", "deadletter"):
            self._problem(f"{where}.onOpen", "expected 'wait' or 'deadletter'")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            self._problem(f"{where}.params", "expected an object")
        return CallStep(step_id, str(capability), version,
                        self._template(params, f"{where}.params", url_keys=("url",)),
                        timeout_ms, on_open, self._hosts(raw.get("allowHosts"), where))

    def _hosts(self, raw: Any, where: str) -> HostPolicy | None:
        """The step's host allow-list: literal strings, never templates (event data
        must not choose where a call goes)."""
        if raw is None:
            return None
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            self._problem(f"{where}.allowHosts", "expected a list of hosts")
            return None
        if any("{{" in item for item in raw):
            self._problem(f"{where}.allowHosts", "placeholders are not allowed here")
            return None
        try:
            return HostPolicy.of(raw)
        except ValueError as exc:
            self._problem(f"{where}.allowHosts", str(exc))
            return None

    def _version_range(self, raw: Any, where: str) -> None:
        if not isinstance(raw, str):
            self._problem(where, "expected a version range string (^1, >=1.0,<2, 1.2.3)")
            return
        try:
            VersionRange.parse(raw)
        except VersionError as exc:
            self._problem(where, str(exc))

    def _emit(self, raw: Mapping[str, Any], where: str, step_id: str) -> EmitStep | None:
        self._unknown_keys(raw, {"emit", "id", "description"}, where)
        spec = raw["emit"]
        if not isinstance(spec, dict) or not isinstance(spec.get("stream"), str):
            self._problem(f"{where}.emit", 'expected {"stream": ..., "event": {...}}')
            return None
        self._unknown_keys(spec, {"stream", "event"}, f"{where}.emit")
        event = spec.get("event")
        if not isinstance(event, dict) or "type" not in event or "payload" not in event:
            self._problem(f"{where}.emit.event", "expected an object with type and payload")
            return None
        return EmitStep(step_id, self._template(spec["stream"], f"{where}.emit.stream"),
                        self._template(event, f"{where}.emit.event"))

    def _branch(self, raw: Mapping[str, Any], where: str, step_id: str,
                label: str) -> BranchStep | None:
        self._unknown_keys(raw, {"if", "then", "else", "id", "description"}, where)
        condition = self._expression(raw["if"], f"{where}.if")
        then = self._steps(raw.get("then", []), f"{where}.then", f"{label}.then")
        otherwise = self._steps(raw.get("else", []), f"{where}.else", f"{label}.else")
        if condition is None:
            return None
        return BranchStep(step_id, condition, then, otherwise)
