"""Event data steering ``http_call`` / ``webhook_call`` (SSRF, issue 13 item 9): real
Redis, real HTTP targets on 127.0.0.1, real name resolution of ``localhost``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming import RegistryExecutor
from framework.consuming.capabilities.registry import CapabilityRegistry
from framework.consuming.capabilities.spec import CallPolicy
from framework.consuming.delivery import Delivery
from framework.consuming.rules.handler import RulesHandler
from framework.consuming.rules.loader import parse_rules
from framework.core.errors import DeadLetterError, RulesFileError
from framework.testing import FakeClock, RedisServer
from providers.builtin import register_builtin_capabilities
from providers.http import HttpActions
from providers.http.guarded_network import Resolver, resolve_host
from tests.execution_deps import execution_deps
from tests.rules_target import HttpTarget, TargetReply

STREAM = "events"


@dataclass
class Rig:
    redis: Redis
    target: HttpTarget
    executor: RegistryExecutor

    @property
    def port(self) -> int:
        return int(self.target.url.rsplit(":", 1)[1])

    async def run(self, step: dict[str, Any], payload: dict[str, Any]) -> None:
        rules = parse_rules(
            {
                "version": 1,
                "rules": [{"name": "steer", "match": {"stream": STREAM}, "steps": [step]}],
            },
            env={"TARGET": self.target.url},
        )
        handler = RulesHandler(rules, self.executor, redis=self.redis)
        event = {"type": "reading", "source": "sensor:x", "payload": payload}
        entry_id = await self.redis.xadd(STREAM, {"event": orjson.dumps(event).decode()})
        [(read_id, fields)] = await self.redis.xrange(STREAM, entry_id, entry_id)
        await handler.handle(Delivery(STREAM, read_id, fields, "rules", "consumer-1"))


async def _rig(redis: Redis, resolve: Resolver) -> AsyncIterator[Rig]:
    registry = CapabilityRegistry()
    # Retries allowed: a refusal must not use them.
    actions = register_builtin_capabilities(
        registry,
        http=HttpActions(policy=CallPolicy(max_retries=3, backoff_base_s=0.0), resolve=resolve),
    )
    executor = RegistryExecutor(registry, execution_deps(redis, FakeClock()))
    try:
        async with HttpTarget() as target:
            target.reply("/hook", TargetReply(200, {"ok": True}))
            yield Rig(redis, target, executor)
    finally:
        await actions.aclose()


@pytest.fixture
async def rig(redis: Redis) -> AsyncIterator[Rig]:
    async for built in _rig(redis, resolve_host):
        yield built


def call(
    url: str,
    *,
    allow: list[str] | None = None,
    capability: str = "http_call",
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "send",
        "call": capability,
        "params": {"url": url, "json": {"n": 1}},
    }
    if capability == "http_call":
        step["params"]["method"] = "POST"
    else:
        step["params"]["secret"] = "s3cret-value"
    if allow is not None:
        step["allowHosts"] = allow
    return step


async def test_a_path_traversal_payload_lands_on_the_encoded_path(rig: Rig) -> None:
    # The target decodes the path it received: one segment holding the whole value.
    rig.target.reply("/items/../../admin/delete?all=1#", TargetReply(200, {"ok": True}))
    await rig.run(
        call("${TARGET}/items/{{ payload.id }}?tag={{ payload.tag }}", allow=["127.0.0.1"]),
        {"id": "../../admin/delete?all=1#", "tag": "a&all=1#x"},
    )
    [request] = rig.target.received
    assert request.method == "POST"
    # One segment under /items/, whatever it holds; the query value stays one value.
    assert request.path == "/items/../../admin/delete?all=1#"
    assert request.query == {"tag": "a&all=1#x"}
    assert rig.target.received_at("/admin/delete") == []


@pytest.mark.parametrize("value", ["..", ".", ""])
async def test_a_path_segment_that_would_climb_or_vanish_is_a_dead_letter(
    rig: Rig, value: str
) -> None:
    with pytest.raises(DeadLetterError, match=r"rule steer, step send: .*url.*path segment"):
        await rig.run(
            call("${TARGET}/items/{{ payload.id }}/delete", allow=["127.0.0.1"]), {"id": value}
        )
    assert rig.target.received == []


async def test_a_host_placeholder_takes_a_host_only(rig: Rig) -> None:
    with pytest.raises(DeadLetterError, match="is not a host name"):
        await rig.run(
            call("http://{{ payload.host }}/hook", allow=["127.0.0.1"]),
            {"host": f"127.0.0.1:{rig.port}/admin?"},
        )
    await rig.run(
        call("http://{{ payload.host }}/hook", allow=["127.0.0.1"]),
        {"host": f"127.0.0.1:{rig.port}"},
    )
    assert [request.path for request in rig.target.received] == ["/hook"]


@pytest.mark.parametrize("allow", [None, "target port only"])
async def test_a_whole_url_placeholder_to_the_redis_port_is_refused(
    rig: Rig, redis_server: RedisServer, allow: str | None
) -> None:
    hosts = None if allow is None else [f"127.0.0.1:{rig.port}"]
    connections = (await rig.redis.info("stats"))["total_connections_received"]
    with pytest.raises(DeadLetterError) as caught:
        await rig.run(
            call("{{ payload.url }}", allow=hosts),
            {"url": f"http://127.0.0.1:{redis_server.port}/"},
        )
    reason = str(caught.value)
    assert reason.startswith("rule steer, step send: target refused: host 127.0.0.1")
    assert ("not in the allow-list" if hosts else "loopback address") in reason
    assert caught.value.attempts == 1
    assert (await rig.redis.info("stats"))["total_connections_received"] == connections
    # The same placeholder reaching the allowed target works.
    await rig.run(
        call("{{ payload.url }}", allow=[f"127.0.0.1:{rig.port}"]),
        {"url": f"{rig.target.url}/hook"},
    )
    assert len(rig.target.received_at("/hook")) == 1


async def test_a_name_resolving_to_loopback_is_refused_unless_named(rig: Rig) -> None:
    url = f"http://localhost:{rig.port}/hook"
    for refused in (None, ["*.localhost", "localhost.example.org"]):
        with pytest.raises(DeadLetterError, match=r"localhost.* loopback|not in the allow"):
            await rig.run(call(url, allow=refused), {})
    with pytest.raises(DeadLetterError, match=r"host localhost resolves to .*loopback"):
        await rig.run(call(url, capability="webhook_call"), {})
    assert rig.target.received == []
    await rig.run(call(url, allow=["localhost"]), {})
    # An address entry names addresses (and hosts written as addresses), not names.
    with pytest.raises(DeadLetterError, match="not in the allow-list"):
        await rig.run(call(url, allow=["127.0.0.0/8", "::1"]), {})
    await rig.run(call(f"{rig.target.url}/hook", allow=["127.0.0.0/8", "::1"]), {})
    assert len(rig.target.received_at("/hook")) == 2


async def test_every_resolved_address_is_checked_and_a_checked_one_is_connected(
    redis: Redis,
) -> None:
    answers = {"svc.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "127.0.0.1"]}
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    async for rig in _rig(redis, resolve):
        with pytest.raises(DeadLetterError, match="mixed.test resolves to 127.0.0.1"):
            await rig.run(call(f"http://mixed.test:{rig.port}/hook", allow=["*.test"]), {})
        # The name never reaches the system resolver: the checked address is connected.
        await rig.run(call(f"http://svc.test:{rig.port}/hook", allow=["svc.test"]), {})
        [request] = rig.target.received
        assert request.headers["Host"] == f"svc.test:{rig.port}"
    assert asked == ["mixed.test", "svc.test"]


@pytest.mark.parametrize(
    ("allow", "problem"),
    [
        (["{{ payload.host }}"], "placeholders are not allowed"),
        (["exa mple.com"], "expected a host name"),
        (["10.0.0.0/33"], "not a network"),
        (["api.example.com:99999"], "port must be 1-65535"),
        ("api.example.com", "expected a list of hosts"),
    ],
)
def test_a_bad_allow_list_is_refused_when_the_rules_load(allow: Any, problem: str) -> None:
    step = {
        "id": "send",
        "call": "http_call",
        "allowHosts": allow,
        "params": {"url": "https://api.example.com/x"},
    }
    with pytest.raises(RulesFileError) as caught:
        parse_rules({"version": 1, "rules": [{"name": "r", "steps": [step]}]})
    assert "rule r (rules[0].steps[0].allowHosts)" in str(caught.value)
    assert problem in str(caught.value)


def test_a_placeholder_in_the_url_scheme_is_refused_when_the_rules_load() -> None:
    step = {"id": "send", "call": "http_call", "params": {"url": "http{{ payload.s }}://x/"}}
    with pytest.raises(RulesFileError, match=r"rules\[0\]\.steps\[0\]\.params\.url.*scheme"):
        parse_rules({"version": 1, "rules": [{"name": "r", "steps": [step]}]})


@pytest.mark.slow  # two clients, two TLS contexts, a second HTTP server
async def test_proxy_environment_variables_cannot_route_around_the_check(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with HttpTarget() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with pytest.raises(DeadLetterError, match="loopback"):
            await rig.run(call(f"{rig.target.url}/hook"), {})
        await rig.run(call(f"{rig.target.url}/hook", allow=["127.0.0.1"]), {})
    assert proxy.received == []
    assert len(rig.target.received_at("/hook")) == 1
