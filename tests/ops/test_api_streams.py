"""``/api/v1/groups`` and ``/api/v1/streams/...`` over real HTTP against a real Redis:
consumer groups, dead letters (list, show, replay by id, filter and all, purge) and
injected test events, with bad input answered 400 naming what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.consuming.dead_letters import DeadLetterStream, Failure
from framework.consuming.delivery import Delivery
from tests.ops.api_client import Api, empty_fleet, serving, tokens_for_every_role
from worker.ops import Role, api_streams

STREAM = "orders"
GROUP = "workers"
LETTERS = "/api/v1/streams/{stream}/dead-letters"
REPLAY = "/api/v1/streams/{stream}/dead-letters/replay"


async def dead_letter(redis: Redis, fields: dict[str, str], *, rule: str, error_type: str
                      ) -> str:
    """One entry read by consumer c1 and dead-lettered as a consumer would."""
    entry_id = str(await redis.xadd(STREAM, fields))
    if not await redis.exists("group-made"):
        await redis.xgroup_create(STREAM, GROUP, id="0")
        await redis.set("group-made", 1)
    await redis.xreadgroup(GROUP, "c1", {STREAM: ">"})
    failure = Failure(reason=f"{rule} failed", error_type=error_type, attempts=5, rule=rule)
    letter_id = await DeadLetterStream(redis, STREAM).write(
        Delivery(STREAM, entry_id, fields, GROUP, "c1", 5), failure, at_s=1_800_000_000.0)
    assert letter_id is not None
    return letter_id


async def three_letters(redis: Redis) -> list[str]:
    return [await dead_letter(redis, {"n": str(i)}, rule=rule, error_type=kind)
            for i, (rule, kind) in enumerate((("a", "Timeout"), ("b", "Invalid"),
                                               ("a", "Invalid")))]


async def replay(api: Api, token: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.call("POST", REPLAY, token, stream=STREAM, json_body=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_list_and_show_dead_letters(redis: Redis) -> None:
    ids = await three_letters(redis)
    async with serving(redis, empty_fleet) as (api, _):
        page = (await api.call("GET", LETTERS, stream=STREAM, params={"count": "2"})).json()
        rest = (await api.call("GET", LETTERS, stream=STREAM,
                               params={"after": page["deadLetters"][-1]["id"]})).json()
        one = await api.call("GET", LETTERS + "/{id}", stream=STREAM, id=ids[1])
        gone = await api.call("GET", LETTERS + "/{id}", stream=STREAM, id="1-1")
        bad = await api.call("GET", LETTERS + "/{id}", stream=STREAM, id="drop table")
        bad_count = await api.call("GET", LETTERS, stream=STREAM, params={"count": "0"})
    assert page["total"] == 3
    assert [letter["id"] for letter in page["deadLetters"] + rest["deadLetters"]] == ids
    assert one.json()["rule"] == "b" and one.json()["fields"] == {"n": "1"}
    assert gone.status_code == 404
    assert bad.status_code == 400 and "dead letter id" in bad.json()["error"]
    assert bad_count.status_code == 400 and "count" in bad_count.json()["error"]


async def test_replay_by_ids_by_filter_and_all(redis: Redis) -> None:
    ids = await three_letters(redis)
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    async with serving(redis, empty_fleet) as (api, _):
        by_id = await replay(api, operator, {"ids": [ids[1], "1-1"]})
        by_filter = await replay(api, operator, {"filter": {"rule": "a",
                                                            "errorType": "Invalid"}})
        rest = await replay(api, operator, {"all": True})
        nothing = await api.call("POST", REPLAY, operator, stream=STREAM, json_body={})
    assert [r["id"] for r in by_id["replayed"]] == [ids[1]] and by_id["missing"] == ["1-1"]
    assert [r["id"] for r in by_filter["replayed"]] == [ids[2]]
    assert [r["id"] for r in rest["replayed"]] == [ids[0]]
    assert nothing.status_code == 400 and "ids" in nothing.json()["error"]
    assert await redis.xlen(f"{STREAM}:dlq") == 0
    # Each replayed entry is back on its stream, marked as the replay of the original.
    entries = await redis.xrange(STREAM)
    replays = [fields for _, fields in entries if "replay_of" in fields]
    assert sorted(fields["n"] for fields in replays) == ["0", "1", "2"]
    actions = [orjson.loads(f["body"])["action"] for _, f in await redis.xrange("audit:chain")]
    assert actions == ["dlq_replay", "dlq_replay", "dlq_replay"]


async def test_purge_needs_admin_and_deletes_every_letter(redis: Redis) -> None:
    await three_letters(redis)
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        refused = await api.call("DELETE", LETTERS, tokens[Role.OPERATOR], stream=STREAM)
        purged = await api.call("DELETE", LETTERS, tokens[Role.ADMIN], stream=STREAM)
    assert refused.status_code == 403
    assert purged.json() == {"stream": STREAM, "purged": 3}
    assert await redis.exists(f"{STREAM}:dlq") == 0


async def test_groups_show_pending_lag_and_consumers(redis: Redis) -> None:
    await three_letters(redis)
    await redis.xadd(STREAM, {"n": "late"})
    async with serving(redis, empty_fleet) as (api, _):
        answer = await api.call("GET", "/api/v1/groups", params={"stream": STREAM})
        bad = await api.call("GET", "/api/v1/groups", params={"stream": "a b"})
    (group,) = answer.json()["groups"]
    assert (group["stream"], group["group"], group["pending"], group["lag"]) == (
        STREAM, GROUP, 0, 1)
    assert [c["name"] for c in group["consumers"]] == ["c1"]
    assert bad.status_code == 400


async def test_inject_a_test_event_and_refuse_invalid_ones(redis: Redis) -> None:
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    path = "/api/v1/streams/{stream}/events"
    async with serving(redis, empty_fleet) as (api, _):
        made = await api.call("POST", path, operator, stream="tests",
                              json_body={"event": {"type": "ping", "source": "console",
                                                   "payload": {"n": 1}}})
        invalid = await api.call("POST", path, operator, stream="tests",
                                 json_body={"event": {"type": "", "payload": []}})
        raw = await api.call("POST", path, operator, stream="tests",
                             json_body={"fields": {"connector": "x", "n": 2}})
        bad_stream = await api.call("POST", path, operator, stream="a b",
                                    json_body={"fields": {"a": "b"}})
    assert made.status_code == 201
    ((entry_id, fields),) = await redis.xrange("tests")
    assert entry_id == made.json()["entryId"]
    assert orjson.loads(fields["event"])["payload"] == {"n": 1}
    assert fields["injected_by"].startswith("tok_")
    assert invalid.status_code == 400
    assert invalid.json()["error"].startswith("request body: event: field type: ")
    assert "field source: Field required" in invalid.json()["error"]
    assert raw.status_code == 400
    assert bad_stream.status_code == 400 and "stream" in bad_stream.json()["error"]


async def test_a_large_replay_goes_on_in_batches(redis: Redis,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_streams, "MAX_REPLAY_PER_REQUEST", 2)
    ids = await three_letters(redis)
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    async with serving(redis, empty_fleet) as (api, _):
        first = await replay(api, operator, {"all": True})
        second = await replay(api, operator, {"all": True, "after": first["next"]})
        bad = await api.call("POST", REPLAY, operator, stream=STREAM,
                             json_body={"all": True, "after": "x"})
    assert [r["id"] for r in first["replayed"]] == ids[:2] and first["more"] is True
    assert [r["id"] for r in second["replayed"]] == ids[2:] and second["more"] is False
    assert second["next"] is None
    assert bad.status_code == 400
    assert await redis.xlen(f"{STREAM}:dlq") == 0
