"""``grist_sync`` against a Grist double (records API shapes, auth, errors, 429),
through the signed catalog's pipeline; the rules example at the end keeps a flat
table in step with a stream of record-change events through a real consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming import (
    Consumer,
    ConsumerOptions,
    RulesHandler,
    parse_rules,
)
from framework.core import DeadLetterError, SystemClock, get_logger
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import ReplayServer
from providers.grist import GristActions, GristSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from tests.providers.grist_double import DOC, GRIST_KEY, GristDouble
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig

DEFINITION = definition_path("grist", "grist_sync")
ROW = {"docId": DOC, "table": "Machines", "require": {"Machine": "press-7"},
       "fields": {"Status": "FAULT", "Temperature": 81.5}}


@pytest.fixture
def grist(replay: ReplayServer) -> Iterator[GristDouble]:
    yield GristDouble(replay)


@pytest.fixture
async def client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient()
    yield client
    await client.aclose()


def actions_for(grist: GristDouble, client: GuardedClient,
                env: dict[str, str] | None = None) -> GristActions:
    return GristActions(GristSettings(base_url=grist.base_url), client=client,
                        secrets=EnvSecrets({"GRIST_API_KEY": GRIST_KEY} if env is None else env),
                        policy=FAST_POLICY)


async def rig_for(redis: Redis, grist: GristDouble, client: GuardedClient,
                  env: dict[str, str] | None = None) -> Rig:
    return await safe_rig(redis, [actions_for(grist, client, env).spec()], [DEFINITION])


async def test_a_new_row_is_added_then_updated_in_place(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    await rig.call("grist_sync", ROW, key="machines:1-0:sync:row")
    assert list(grist.rows.values()) == [{"Machine": "press-7", "Status": "FAULT",
                                          "Temperature": 81.5}]
    await rig.call("grist_sync", {**ROW, "fields": {"Status": "OK", "Temperature": 60.0}},
                   key="machines:2-0:sync:row")
    assert list(grist.rows.values()) == [{"Machine": "press-7", "Status": "OK",
                                          "Temperature": 60.0}]
    [put, *_] = [r for r in grist.server.requests if r.method == "PUT"]
    assert put.query == {"onmany": "first", "noparse": "true"}
    assert put.headers["authorization"] == f"Bearer {GRIST_KEY}"
    assert await rig.kinds() == ["executed", "executed"]


BAD_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"docId": "../other"}, "docId"),
    ({"table": "machines"}, "table"),
    ({"require": {}}, "require"),
    ({"require": {"id": 3}}, "require"),
    ({"fields": {"Status; DROP": "x"}}, "fields"),
    ({"fields": {"Status": {"nested": 1}}}, "fields"),
    ({"onMany": "some"}, "onMany"),
    ({"baseUrl": "grist.local"}, "baseUrl"),
    ({"apiKey": GRIST_KEY}, "apiKey"),
]


@pytest.mark.parametrize(("change", "named"), BAD_PARAMS)
async def test_every_parameter_error_names_the_parameter_and_writes_nothing(
        redis: Redis, grist: GristDouble, client: GuardedClient, change: dict[str, Any],
        named: str) -> None:
    rig = await rig_for(redis, grist, client)
    with pytest.raises(DeadLetterError, match="grist_sync params") as caught:
        await rig.call("grist_sync", {**ROW, **change})
    assert named in str(caught.value) and GRIST_KEY not in str(caught.value)
    assert grist.server.requests == []


async def test_fields_are_required_explicitly(redis: Redis, grist: GristDouble,
                                              client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    with pytest.raises(DeadLetterError, match="fields"):
        await rig.call("grist_sync", {k: v for k, v in ROW.items() if k != "fields"})


async def test_grist_s_error_is_quoted_and_not_retried(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    with pytest.raises(DeadLetterError, match='400 .*Invalid column "Colour"') as caught:
        await rig.call("grist_sync", {**ROW, "fields": {"Colour": "red"}})
    assert caught.value.attempts == 1 and grist.rows == {}


async def test_a_wrong_key_is_refused_and_never_printed(
        redis: Redis, grist: GristDouble, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-grist-key-777"
    rig = await rig_for(redis, grist, client, env={"GRIST_API_KEY": wrong})
    with pytest.raises(DeadLetterError, match="401") as caught:
        await rig.call("grist_sync", ROW)
    printed = str(caught.value) + str(await rig.audit()) + capsys.readouterr().err
    assert wrong not in printed and GRIST_KEY not in printed


async def test_a_failing_grist_is_retried_then_the_breaker_opens(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    grist.failing = 100  # reads answered, writes 503
    rig = await rig_for(redis, grist, client)
    with pytest.raises(CallFailedError, match="after 3 attempts.*503"):
        await rig.call("grist_sync", ROW)
    with pytest.raises(CircuitOpenError):
        await rig.call("grist_sync", ROW)
    assert grist.failing == 97 and grist.rows == {}


async def test_429_is_retried(redis: Redis, grist: GristDouble,
                              client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    grist.rate_limited = 1
    await rig.call("grist_sync", ROW)
    assert len(grist.rows) == 1


@pytest.mark.slow  # the read-back is polled for its 2 s timeout
async def test_a_write_not_read_back_rolls_back_to_the_previous_values(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    row_id = grist.add({"Machine": "press-7", "Status": "OK", "Temperature": 60.0})
    rig = await rig_for(redis, grist, client)
    grist.ignore_writes = True  # the upsert is answered but not kept
    with pytest.raises(RolledBackError):
        await rig.call("grist_sync", ROW)
    grist.ignore_writes = False
    records = await rig.audit()
    assert [r.kind for r in records] == ["failed", "rollback"]
    assert records[1].body["ok"] is True
    assert records[1].body["rollbackParams"]["fields"] == {"Status": "OK", "Temperature": 60.0}
    assert grist.rows == {row_id: {"Machine": "press-7", "Status": "OK", "Temperature": 60.0}}


@pytest.mark.slow  # the read-back is polled for its 2 s timeout
async def test_a_rollback_removes_a_row_that_did_not_exist_before(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    grist.ignore_writes = True
    with pytest.raises(RolledBackError):
        await rig.call("grist_sync", ROW)
    [_, rollback] = await rig.audit()
    assert rollback.body["ok"] is True and rollback.body["rollbackParams"]["fields"] is None
    grist.ignore_writes = False
    grist.add({"Machine": "press-7", "Status": "FAULT"})  # as if it had been kept
    await rig.call("grist_sync", {**ROW, "fields": None}, key="machines:9-0:sync:row")
    assert grist.rows == {}


async def test_a_redelivered_step_does_not_write_an_old_value_again(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, grist, client)
    await rig.call("grist_sync", ROW, key="machines:1-0:sync:row")
    await rig.call("grist_sync", {**ROW, "fields": {"Status": "OK", "Temperature": 60.0}},
                   key="machines:2-0:sync:row")
    again = await rig.call("grist_sync", ROW, key="machines:1-0:sync:row")  # late redelivery
    assert again["duplicate"] is True
    assert list(grist.rows.values()) == [{"Machine": "press-7", "Status": "OK",
                                          "Temperature": 60.0}]
    assert len([r for r in grist.server.requests if r.method == "PUT"]) == 2


STREAM = "items:machines"
RULES = {"version": 1, "rules": [{
    "name": "machines-to-grist",
    "match": {"streams": [STREAM]},
    "steps": [{"id": "upsert", "call": "grist_sync", "version": "^1",
               "allowHosts": ["127.0.0.1"],
               "params": {"docId": DOC, "table": "Machines",
                          "require": {"Machine": "{{ payload.name }}"},
                          "fields": {"Status": "{{ payload.status }}",
                                     "Temperature": "{{ payload.temperature }}"}}}],
}]}


async def _publish_change(redis: Redis, name: str, version: int, **payload: Any) -> None:
    await redis.xadd(STREAM, {"connector": "machines", "type": "HTTP_JSON", "item_id": name,
                              "version": str(version),
                              "payload": orjson.dumps({"name": name, **payload}).decode()})


async def test_the_rules_example_keeps_a_flat_table_in_step_with_record_changes(
        redis: Redis, grist: GristDouble, client: GuardedClient) -> None:
    rig = await safe_rig(redis, [actions_for(grist, client).spec()], [DEFINITION])
    handler = RulesHandler(parse_rules(RULES, source="rules.json"), rig.executor, redis=redis)
    consumer = Consumer(redis, handler, ConsumerOptions(
        streams=(STREAM,), consumer="grist-1", start_id="0", block_ms=50, max_deliveries=2,
        max_in_flight=1),  # the changes of one row land in the stream's order
        clock=SystemClock(), logger=get_logger(test="grist-e2e"))
    task = asyncio.create_task(consumer.run())
    try:
        await _publish_change(redis, "press-7", 1, status="OK", temperature=60.0)
        await _publish_change(redis, "lathe-2", 1, status="OK", temperature=41.0)
        await _publish_change(redis, "press-7", 2, status="FAULT", temperature=81.5)
        await _until_executed(rig, 3)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=10)
    assert sorted(grist.rows.values(), key=lambda row: row["Machine"]) == [
        {"Machine": "lathe-2", "Status": "OK", "Temperature": 41.0},
        {"Machine": "press-7", "Status": "FAULT", "Temperature": 81.5}]
    assert (await redis.xpending(STREAM, "connector-fleet"))["pending"] == 0


async def _until_executed(rig: Rig, count: int, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await rig.kinds()).count("executed") < count:
        assert asyncio.get_running_loop().time() < deadline, f"{count} calls not executed"
        await asyncio.sleep(0.02)
