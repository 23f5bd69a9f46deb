"""The absence trigger of rules: what it expands to, the problems it names, and the
whole path under a real consumer: events -> heartbeats -> watchdog -> the rule's steps."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import Consumer, ConsumerOptions, RegistryExecutor, parse_duration_s
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core import SystemClock, get_logger
from framework.core.errors import RulesFileError
from framework.testing import FakeClock
from providers.builtin import register_builtin_capabilities
from providers.devices import DeviceRegistry, Heartbeat, Watchdog
from tests.conftest import REPO_ROOT
from tests.execution_deps import execution_deps


def meter_rules(**absence: Any) -> dict[str, Any]:
    spec = {"match": {"stream": "meters", "type": "meter.reading"},
            "device": "payload.meterId", "group": "payload.site", "for": "30m", **absence}
    return {"version": 1, "rules": [{
        "name": "meter-silent", "absence": spec,
        "steps": [{"id": "ticket", "emit": {"stream": "tickets", "event": {
            "type": "ticket.open", "source": "rules",
            "payload": {"meter": "{{ payload.deviceId }}", "since": "{{ payload.lastSeen }}"}}}}],
    }]}


def test_an_absence_trigger_is_a_heartbeat_rule_and_a_trigger_rule() -> None:
    rules = parse_rules(meter_rules())
    heartbeat, trigger = rules.rules
    assert heartbeat.name == "meter-silent:heartbeat"
    assert sorted(heartbeat.match.streams) == ["meters"]
    assert heartbeat.steps[0].capability_id == "device_heartbeat"  # type: ignore[union-attr]
    assert trigger.name == "meter-silent"
    assert rules.streams == ["device-events", "meters"]


@pytest.mark.parametrize(("absence", "problem"), [
    ({"device": "meterId"}, "absence.device: expected the dotted path"),
    ({"for": "soon"}, "absence.for: expected a duration"),
    ({"for": 0}, "absence.for: expected a duration"),
    ({"group": 3}, "absence.group: expected a dotted path"),
    ({"every": "1m"}, "absence.every: unknown key"),
])
def test_a_bad_absence_trigger_is_named(absence: dict[str, Any], problem: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(meter_rules(**absence))
    assert f"rule meter-silent (rules[0].absence){problem[len('absence'):]}" in str(caught.value)


def test_durations() -> None:
    assert [parse_duration_s(v) for v in (90, "90s", "30m", "4h", "1d", "250ms")] == [
        90, 90, 1800, 14400, 86400, 0.25]
    assert [parse_duration_s(v) for v in (True, -1, "", "1w", None)] == [None] * 5


async def eventually(count: Callable[[], Awaitable[int]], at_least: int) -> None:
    """Poll a count in Redis (nothing to wait on as an event) for up to 10 s."""
    async with asyncio.timeout(10):
        while True:
            if await count() >= at_least:
                return
            await asyncio.sleep(0.02)


def reading(meter: Any, site: str = "north") -> dict[str, str]:
    return {"event": json.dumps({"type": "meter.reading", "source": "gateway",
                                 "payload": {"meterId": meter, "site": site, "kwh": 1.5}})}


async def test_a_silent_meter_opens_one_ticket_through_the_consumer(redis: Redis) -> None:
    registry = CapabilityRegistry()
    actions = register_builtin_capabilities(registry, env={})
    handler = RulesHandler(parse_rules(meter_rules()),
                           RegistryExecutor(registry, execution_deps(redis, SystemClock())),
                           redis=redis)
    options = ConsumerOptions(streams=("meters", "device-events"), group="rules",
                              consumer="c1", start_id="0", block_ms=50, claim_idle_ms=500)
    consumer = Consumer(redis, handler, options, clock=SystemClock(),
                        logger=get_logger(test="absence"))
    task = asyncio.create_task(consumer.run())
    try:
        for meter in ("m-1", "m-2", 1042):
            await redis.xadd("meters", reading(meter))
        await redis.xadd("meters", reading("../../etc"))  # refused: dead letter, not a key
        devices = DeviceRegistry(redis, clock=SystemClock())
        await eventually(lambda: devices.count(), 3)
        # 31 minutes later, m-1 and 1042 are silent; m-2 was heard again.
        later = FakeClock(start_s=time.time() + 31 * 60)
        await DeviceRegistry(redis, clock=later).heartbeat(
            Heartbeat("m-2", seen_at_s=later.time() - 60, timeout_s=1800))
        watchdog = Watchdog(redis, clock=later)
        await watchdog.lease.try_acquire()
        assert (await watchdog.sweep()).absent == 2
        await eventually(lambda: redis.xlen("tickets"), 2)
        await asyncio.sleep(0.2)  # nothing more comes
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await actions.aclose()
    tickets = [json.loads(f["event"])["payload"] for _, f in await redis.xrange("tickets")]
    assert sorted(t["meter"] for t in tickets) == ["1042", "m-1"]
    device = await devices.show("m-1")
    assert device is not None and device.group == "north" and device.context["type"] == (
        "meter.reading")
    letters = await redis.xrange("meters:dlq")
    assert len(letters) == 1 and "deviceId: expected 1 to 128" in letters[0][1]["reason"]


def test_the_example_of_the_devices_doc_is_a_valid_rules_file() -> None:
    text = (REPO_ROOT / "docs" / "devices.md").read_text()
    example = json.loads(re.findall(r"```json\n(.*?)```", text, re.DOTALL)[0])
    names = [rule.name for rule in parse_rules(example, source="docs/devices.md").rules]
    assert names == ["meter-silent:heartbeat", "meter-silent"]
