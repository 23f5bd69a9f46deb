"""The rules examples of docs/actions.md load as a rules file: every step and rule
written there is valid as written."""

from __future__ import annotations

import json
import re
from typing import Any

from framework.consuming import parse_rules
from tests.conftest import REPO_ROOT


def test_the_examples_of_the_actions_doc_are_valid_rules() -> None:
    text = (REPO_ROOT / "docs" / "actions.md").read_text()
    rules: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL):
        parsed = json.loads(f"[{block}]")
        rules += [item for item in parsed if "match" in item]
        steps += [item for item in parsed if "call" in item]
    assert steps and rules
    calls = {step["call"] for step in steps} | {s["call"] for r in rules for s in r["steps"]}
    assert calls == {"email_send", "slack_message", "sms_send", "patient_alert", "grist_sync",
                     "drone_waypoint", "alarm_trigger", "pump_control", "irrigation_control",
                     "device.firmware_update", "device.reboot", "opcua_write"}
    rules.append({"name": "examples", "match": {"streams": ["alerts"]}, "steps": steps})
    parsed_rules = parse_rules({"version": 1, "rules": rules}, source="docs/actions.md").rules
    assert len(parsed_rules) == len(rules)
