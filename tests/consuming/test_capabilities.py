"""The capability registry (versions, entry points) and the built-in capabilities."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from redis.asyncio import Redis

from framework.consuming.capabilities.invocation import invoke
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallContext, CapabilitySpec
from framework.consuming.delivery import Delivery
from framework.consuming.events import parse_event
from framework.core.deadlines import Deadlines
from framework.core.errors import PermanentCallError, UnknownCapabilityError, VersionError
from framework.core.host_policy import HostPolicy
from framework.core.logs import get_logger
from framework.testing import FakeClock
from providers.builtin import default_capability_registry, register_builtin_capabilities
from providers.http import HttpActions, verify_signature
from tests.rules_target import HttpTarget, TargetReply

# The test targets listen on 127.0.0.1: allowed explicitly, as a deployment must.
LOCAL = HostPolicy.of(["127.0.0.1"])


async def noop(params: Mapping[str, Any], context: CallContext) -> str:
    return "done"


def spec(version: str, capability_id: str = "valve") -> CapabilitySpec:
    return CapabilitySpec(capability_id, version, noop)


def test_resolution_picks_the_newest_version_inside_the_range() -> None:
    registry = CapabilityRegistry()
    for version in ("1.0.0", "1.2.0", "2.0.0", "1.10.1"):
        registry.register(spec(version))
    assert registry.resolve("valve", "^1").version == "1.10.1"
    assert registry.resolve("valve", ">=1.0,<1.5").version == "1.2.0"
    assert registry.resolve("valve", "1.0.0").version == "1.0.0"
    assert registry.resolve("valve", None).version == "2.0.0"
    assert registry.get("valve@1.2.0").version == "1.2.0"
    with pytest.raises(UnknownCapabilityError,
                       match=r"no registered version matches \^3 \(registered: 1.0.0, 1.2.0, "
                             r"1.10.1, 2.0.0\)"):
        registry.resolve("valve", "^3")
    with pytest.raises(UnknownCapabilityError, match="pump: not registered"):
        registry.resolve("pump")


def test_a_version_registered_later_is_resolved_from_then_on() -> None:
    registry = CapabilityRegistry()
    registry.register(spec("1.0.0"))
    assert registry.resolve("valve", "^1").version == "1.0.0"  # resolved once, kept
    registry.register(spec("1.1.0"))
    assert registry.resolve("valve", "^1").version == "1.1.0"
    replacement = CapabilitySpec("valve", "1.1.0", noop, description="v2")
    registry.register(replacement, replace=True)
    assert registry.resolve("valve", "^1") is replacement


def test_a_version_is_registered_once_and_must_parse() -> None:
    registry = CapabilityRegistry()
    registry.register(spec("1.0.0"))
    with pytest.raises(ValueError, match="valve@1.0.0 is already registered"):
        registry.register(spec("1.0.0"))
    with pytest.raises(VersionError, match="invalid version 'one'"):
        registry.register(spec("one"))


def test_builtins_are_registered_in_one_place() -> None:
    registry = CapabilityRegistry()
    register_builtin_capabilities(registry, http=HttpActions(hosts=LOCAL))
    assert {"emit_event@1.0.0", "http_call@1.0.0", "log@1.0.0",
            "webhook_call@1.0.0", "email_send@1.0.0", "slack_message@1.0.0",
            "sms_send@1.0.0", "patient_alert@1.0.0", "grist_sync@1.0.0"} \
        <= set(registry.keys)


def test_entry_points_add_capabilities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real installed distribution (a dist-info on sys.path) declaring the entry point.
    (tmp_path / "valves_plugin.py").write_text(
        "from framework.consuming.capabilities.spec import CapabilitySpec\n"
        "def _open(params, context):\n    return 'opened'\n"
        "OPEN_VALVE = CapabilitySpec('open_valve', '1.4.0', _open)\n"
        "def more():\n    return [CapabilitySpec('close_valve', '2.0.0', _open)]\n")
    dist = tmp_path / "valves_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: valves-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[connector_fleet.capabilities]\nopen_valve = valves_plugin:OPEN_VALVE\n"
        "more = valves_plugin:more\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry, actions = default_capability_registry(http=HttpActions(hosts=LOCAL))
        assert registry.resolve("open_valve", "^1").key == "open_valve@1.4.0"
        assert registry.resolve("close_valve").key == "close_valve@2.0.0"
        assert "http_call@1.0.0" in registry.keys
    finally:
        sys.modules.pop("valves_plugin", None)


@pytest.fixture
async def actions() -> AsyncIterator[HttpActions]:
    http = HttpActions(hosts=LOCAL)
    yield http
    await http.aclose()


# One deadline timer set for the calls of this module, as a process has.
DEADLINES = Deadlines()


def context(redis: Redis, key: str = "events:1-0:rule:step") -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=FakeClock(),
                       logger=get_logger(test="capabilities"))


async def test_webhook_signature_is_verifiable_by_the_receiver(
    redis: Redis, actions: HttpActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cr3t-value")
    webhook = CapabilitySpec("webhook_call", "1.0.0", actions.webhook_call)
    async with HttpTarget() as target:
        target.reply("/hook", TargetReply(202, {"accepted": True}))
        result = await invoke(webhook, {"url": f"{target.url}/hook", "secretEnv": "HOOK_SECRET",
                                        "json": {"alert": "a-1", "value": 8.9}},
                              context(redis), deadlines=DEADLINES)
    [request] = target.received
    assert result == {"status": 202, "json": {"accepted": True}}
    assert request.json() == {"alert": "a-1", "value": 8.9}
    assert verify_signature("s3cr3t-value", request.body, request.headers["X-Signature-256"])
    assert not verify_signature("other-secret", request.body,
                                request.headers["X-Signature-256"])
    assert not verify_signature("s3cr3t-value", request.body + b" ",
                                request.headers["X-Signature-256"])
    assert request.headers["Idempotency-Key"] == "events:1-0:rule:step"


async def test_webhook_without_a_secret_fails_at_once_without_naming_a_value(
    redis: Redis, actions: HttpActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    webhook = CapabilitySpec("webhook_call", "1.0.0", actions.webhook_call)
    with pytest.raises(PermanentCallError, match="no secret .*WEBHOOK_SECRET"):
        await invoke(webhook, {"url": "http://127.0.0.1:9/hook", "json": {}}, context(redis),
                     deadlines=DEADLINES)


async def test_the_secret_never_reaches_logs_or_errors(
    redis: Redis, actions: HttpActions
) -> None:
    webhook = CapabilitySpec("webhook_call", "1.0.0", actions.webhook_call)
    async with HttpTarget() as target:
        target.reply("/hook", TargetReply(401, {"error": "bad signature"}))
        with structlog.testing.capture_logs() as logs, pytest.raises(PermanentCallError) as caught:
            await invoke(webhook, {"url": f"{target.url}/hook", "secret": "hunter2-secret",
                                   "json": {}}, context(redis), deadlines=DEADLINES)
    assert "hunter2-secret" not in str(caught.value)
    assert "hunter2-secret" not in repr(logs)


async def test_http_call_parameters_are_validated_and_not_retried(
    redis: Redis, actions: HttpActions
) -> None:
    http_call = actions.specs()[0]
    with pytest.raises(PermanentCallError) as caught:
        await invoke(http_call, {"url": "ftp://x", "method": "FETCH"}, context(redis),
                     deadlines=DEADLINES)
    assert "http_call params: field method" in caught.value.reason
    assert "field url" in caught.value.reason
    assert caught.value.attempts == 1


async def test_http_call_sends_query_headers_and_text_bodies(
    redis: Redis, actions: HttpActions
) -> None:
    async with HttpTarget() as target:
        target.reply("/text", TargetReply(200, "plain"))
        result = await invoke(actions.specs()[0], {
            "method": "PUT", "url": f"{target.url}/text", "query": {"page": 2},
            "headers": {"X-Trace": "t-1"}, "body": "raw body"}, context(redis), deadlines=DEADLINES)
    [request] = target.received
    assert (request.method, request.body, request.headers["X-Trace"]) == (
        "PUT", b"raw body", "t-1")
    assert request.query == {"page": "2"}
    assert result == {"status": 200, "json": "plain"}


async def test_emit_event_adds_a_base_event_stamped_with_the_idempotency_key(
    redis: Redis,
) -> None:
    registry, actions = default_capability_registry(http=HttpActions(hosts=LOCAL))
    try:
        result = await invoke(registry.resolve("emit_event", "^1"), {
            "stream": "out", "event": {"type": "valve.closed", "source": "rules",
                                       "payload": {"valve": "v-3"}}},
            context(redis, key="events:9-0:close:emit"), deadlines=DEADLINES)
    finally:
        await actions.aclose()
    [(entry_id, fields)] = await redis.xrange("out")
    assert result == {"entry_id": entry_id}
    event = parse_event(Delivery("out", entry_id, fields, "g", "c"))
    assert (event.type, event.event_id, event.payload) == (
        "valve.closed", "events:9-0:close:emit", {"valve": "v-3"})


async def test_emit_event_rejects_an_invalid_event(redis: Redis) -> None:
    registry, actions = default_capability_registry(http=HttpActions(hosts=LOCAL))
    try:
        with pytest.raises(PermanentCallError,
                           match="emit_event params: field type: Field required"):
            await invoke(registry.resolve("emit_event"),
                         {"stream": "out", "event": {"source": "s", "payload": {}}},
                         context(redis), deadlines=DEADLINES)
    finally:
        await actions.aclose()
    assert await redis.exists("out") == 0


async def test_log_writes_a_structured_line(redis: Redis) -> None:
    registry, actions = default_capability_registry(http=HttpActions(hosts=LOCAL))
    try:
        with structlog.testing.capture_logs() as logs:
            await invoke(registry.resolve("log"), {"message": "tank hot", "level": "warning",
                                                   "fields": {"node": "svm-3"}}, context(redis),
                         deadlines=DEADLINES)
    finally:
        await actions.aclose()
    assert {"event": "tank hot", "log_level": "warning", "node": "svm-3"}.items() <= \
        logs[-1].items()
