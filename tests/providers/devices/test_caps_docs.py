"""The rules example of docs/device-capabilities.md loads as a rules file, and every
capability its table names has a shipped definition."""

from __future__ import annotations

import json
import re

from framework.consuming import parse_rules
from tests.conftest import REPO_ROOT
from tests.providers.devices.rig import DEFINITIONS

DOC = REPO_ROOT / "docs" / "device-capabilities.md"


def test_the_rules_example_is_valid() -> None:
    [block] = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    rules = parse_rules({"version": 1, "rules": [json.loads(block)]}, source=str(DOC))
    steps = rules.rules[0].steps
    assert [step.capability_id for step in steps] == [  # type: ignore[union-attr]
        "device.telemetry_collect", "diagnosis.self_test", "gpio_write",
        "alert.threshold_monitor", "data.compress_upload"]


def test_every_capability_in_the_table_ships_a_definition() -> None:
    named = set(re.findall(r"^\| `([a-z_.]+)` (\d+\.\d+\.\d+) \|", DOC.read_text(), re.M))
    shipped = {tuple(path.stem.split("_v")) for path in DEFINITIONS.glob("*.json")}
    assert len(named) == 9 and named <= shipped


async def test_the_builtin_registry_holds_every_device_capability() -> None:
    from framework.consuming import CapabilityRegistry
    from providers.builtin import register_builtin_capabilities

    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, env={"GPIO_ALLOWED_CHIPS": "gpiochip0"})
    try:
        shipped = {"{}@{}".format(*path.stem.split("_v")) for path in DEFINITIONS.glob("*.json")}
        assert len(shipped) == 11 and shipped <= set(registry.keys)
    finally:
        await actions.aclose()
