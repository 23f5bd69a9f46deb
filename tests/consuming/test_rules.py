"""The rules file: loading, every error naming the rule and its position, matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from framework.consuming.delivery import Delivery
from framework.consuming.events import InboundEvent, parse_event
from framework.consuming.rules.loader import load_rules, parse_rules
from framework.consuming.rules.model import BranchStep, CallStep, EmitStep, Rule
from framework.consuming.rules.templating import Template
from framework.core.errors import ExpressionError, RulesFileError
from tests.conftest import REPO_ROOT


def rules_of(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "rules": list(rules)}


def problems_of(document: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(document, source="rules.json", env=env)
    assert str(caught.value).startswith("rules.json: invalid rules:")
    return caught.value.problems


def a_rule(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "r", "match": {"stream": "events"},
                            "steps": [{"call": "log", "params": {"message": "hi"}}]}
    rule.update(changes)
    return rule


def event_of(document: dict[str, Any], stream: str = "events") -> InboundEvent:
    return parse_event(Delivery(stream, "1-0", {"event": orjson.dumps(document).decode()},
                                "g", "c"))


def matches(rule: Rule, event: InboundEvent) -> bool:
    names = {"event": event.as_dict(), "payload": event.payload, "steps": {}}
    return rule.match.matches(event, names)


def test_the_example_rules_file_loads() -> None:
    rule_set = load_rules(REPO_ROOT / "rules.json", env={})
    assert rule_set.streams == ["raw-input-signals", "recoco-events", "sensor-readings"]
    weather = rule_set.rules[0]
    assert isinstance(weather.steps[0], CallStep)
    assert weather.steps[0].capability_id == "webhook_call"
    params = weather.steps[0].params.render({"payload": {"id": "a", "event": "e",
                                                         "severity": "Severe",
                                                         "headline": "h", "areaDesc": "x"}})
    assert params["url"] == "http://127.0.0.1:8089/hooks/weather"
    assert isinstance(weather.steps[1], EmitStep)
    assert isinstance(rule_set.rules[1].steps[1], BranchStep)


def test_environment_variables_are_substituted_and_missing_ones_named() -> None:
    step = {"call": "http_call", "params": {"url": "${HOOK_URL}", "json": {"k": "$${LITERAL}"}}}
    rule_set = parse_rules(rules_of(a_rule(steps=[step])), env={"HOOK_URL": "http://h/x"})
    call = rule_set.rules[0].steps[0]
    assert isinstance(call, CallStep)
    assert call.params.render({}) == {"url": "http://h/x", "json": {"k": "${LITERAL}"}}
    assert problems_of(rules_of(a_rule(steps=[step])), env={}) == [
        "rule r (rules[0].steps[0].params.url): environment variable HOOK_URL is not set "
        "(set it, or write ${HOOK_URL:-default})"]


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text('{"rules": [\n  {"name": "a",}\n]}')
    with pytest.raises(RulesFileError) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)
    assert "invalid JSON at line 2, column 16" in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="(?s)missing.json.*cannot read the file"):
        load_rules(tmp_path / "missing.json")


def test_expression_syntax_errors_name_rule_pointer_and_offset() -> None:
    document = rules_of(
        a_rule(name="ok"),
        a_rule(name="close-valve", steps=[
            {"call": "log", "params": {"message": "x"}},
            {"if": "payload.diagnosis == = 'hardware_fault'", "then": []},
        ]),
    )
    [problem] = problems_of(document)
    assert problem.startswith("rule close-valve (rules[1].steps[1].if): syntax error")
    assert "at position 21" in problem  # the second "="


def test_template_errors_name_the_parameter_and_offset() -> None:
    step = {"call": "http_call", "params": {"json": {"text": "value {{ payload.value + }}"}}}
    [problem] = problems_of(rules_of(a_rule(name="t", steps=[step])))
    assert problem.startswith("rule t (rules[0].steps[0].params.json.text): syntax error")
    assert "at position 24" in problem  # right after the "+"


def test_every_problem_of_the_file_is_listed_at_once() -> None:
    document = rules_of(
        {"match": {}, "steps": [{"call": "log"}]},
        a_rule(name="dup"),
        a_rule(name="dup"),
        a_rule(name="bad-step", steps=[{"call": "log", "emit": {}}, {"wat": 1}]),
        a_rule(name="bad-match", match={"streams": [], "colour": "red",
                                        "payload.value": {"bigger": 3}}),
        a_rule(name="bad-call", steps=[{"call": "http_call", "version": "^x",
                                        "timeoutMs": -1, "onOpen": "drop"}]),
        a_rule(name="bad-emit", steps=[{"emit": {"stream": "s", "event": {"type": "t"}}}]),
        a_rule(name="dup-ids", steps=[{"id": "a", "call": "log"}, {"id": "a", "call": "log"}]),
    )
    problems = problems_of(document)
    expected = [
        "rule rules[0] (rules[0].name): required",
        "rule dup (rules[2].name): duplicate rule name",
        "rule bad-step (rules[3].steps[0]): a step has exactly one of",
        "rule bad-step (rules[3].steps[1]): a step has exactly one of",
        "rule bad-match (rules[4].match.streams): expected a non-empty string or list",
        "rule bad-match (rules[4].match.colour): unknown key",
        "rule bad-match (rules[4].match.payload.value.bigger): unknown operator",
        "rule bad-call (rules[5].steps[0].version): invalid version",
        "rule bad-call (rules[5].steps[0].timeoutMs): expected a positive integer",
        "rule bad-call (rules[5].steps[0].onOpen): expected 'wait' or 'deadletter'",
        "rule bad-emit (rules[6].steps[0].emit.event): expected an object with type and payload",
        "rule dup-ids (rules[7].steps[1].id): duplicate step id 'a'",
    ]
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)
    assert len(problems) == len(expected)


def test_the_document_shape_and_version_are_checked() -> None:
    assert problems_of([]) == ['expected an object {"version": 1, "rules": [...]}']
    assert problems_of({"version": 2, "rules": []}) == [
        "version: unsupported version 2 (expected 1)"]


def test_disabled_rules_are_left_out() -> None:
    rule_set = parse_rules(rules_of(a_rule(name="off", enabled=False), a_rule(name="on")))
    assert [rule.name for rule in rule_set.rules] == ["on"]


def test_streams_default_to_raw_input_signals() -> None:
    rule_set = parse_rules(rules_of(a_rule(match={})))
    assert rule_set.streams == ["raw-input-signals"]


def test_tag_membership_matches_the_les_communs_recommendation() -> None:
    [rule] = parse_rules(rules_of(a_rule(match={
        "stream": "events", "type": "recommendation.updated",
        "payload.tags": {"contains": "les-communs"}}))).rules
    tagged = event_of({"type": "recommendation.updated", "source": "recoco",
                       "payload": {"id": 7, "tags": ["eau", "les-communs"]}})
    untagged = event_of({"type": "recommendation.updated", "source": "recoco",
                         "payload": {"id": 8, "tags": ["eau"]}})
    no_tags = event_of({"type": "recommendation.updated", "source": "recoco",
                        "payload": {"id": 9}})
    other_type = event_of({"type": "recommendation.deleted", "source": "recoco",
                           "payload": {"id": 7, "tags": ["les-communs"]}})
    assert [matches(rule, e) for e in (tagged, untagged, no_tags, other_type)] == [
        True, False, False, False]


@pytest.mark.parametrize(("conditions", "expected"), [
    ({"payload.value": 8.9}, True),
    ({"payload.value": {"gt": 8.5, "lte": 9}}, True),
    ({"payload.value": {"lt": 8.5}}, False),
    ({"payload.unit": {"in": ["°C", "K"]}}, True),
    ({"payload.unit": {"not_in": ["°C"]}}, False),
    ({"payload.unit": {"ne": "K"}}, True),
    ({"payload.node.site": "nord"}, True),
    ({"payload.readings.1": 3}, True),
    ({"payload.missing": {"exists": False}}, True),
    ({"payload.value": {"exists": True}}, True),
    ({"payload.missing": {"gt": 1}}, False),
    ({"payload.unit": {"gt": 3}}, False),  # str > int: not a match, not an error
    ({"payload.node.site": {"matches": "^no"}}, True),
    ({"source": ["sensor:a", "sensor:b"]}, True),
    ({"source": "sensor:c"}, False),
    ({"if": "payload.value > 8.5 and payload.unit == '°C'"}, True),
    ({"if": "len(payload.readings) > 5"}, False),
])
def test_match_conditions(conditions: dict[str, Any], expected: bool) -> None:
    [rule] = parse_rules(rules_of(a_rule(match={"stream": "events", **conditions}))).rules
    event = event_of({"type": "reading", "source": "sensor:a", "payload": {
        "value": 8.9, "unit": "°C", "node": {"site": "nord"}, "readings": [1, 3]}})
    assert matches(rule, event) is expected


def test_a_rule_only_sees_its_streams() -> None:
    rule_set = parse_rules(rules_of(a_rule(match={"streams": ["a", "b"]})))
    assert rule_set.streams == ["a", "b"]
    assert rule_set.candidates("c") == ()
    [rule] = rule_set.candidates("a")
    assert not matches(rule, event_of({"type": "t", "source": "s", "payload": {}}, "c"))


def test_templates_keep_types_for_whole_placeholders_and_render_text_otherwise() -> None:
    template = Template({"value": "{{ payload.value }}", "node": "{{ payload.node }}",
                         "text": "{{ payload.value }} {{ payload.unit }}{{ payload.none }}",
                         "json": "tags={{ payload.tags }}", "plain": "no {braces}",
                         "list": ["{{ payload.value * 2 }}", 3]}, where="params")
    rendered = template.render({"payload": {"value": 8.5, "unit": "°C", "none": None,
                                            "node": {"site": "nord"}, "tags": ["a"]}})
    assert rendered == {"value": 8.5, "node": {"site": "nord"}, "text": "8.5 °C",
                        "json": 'tags=["a"]', "plain": "no {braces}", "list": [17.0, 3]}
    assert type(rendered["node"]) is dict


def test_template_constants_and_missing_paths() -> None:
    template = Template({"flag": "{{ True }}", "none": "{{ None }}", "n": "{{ payload.n }}"},
                        where="params")
    assert template.render({"payload": {"n": 1}}) == {"flag": True, "none": None, "n": 1}
    with pytest.raises(ExpressionError, match="params.n: KeyError: 'n'"):
        template.render({"payload": {}})
    with pytest.raises(ExpressionError, match="unknown name 'payload'"):
        template.render({})
