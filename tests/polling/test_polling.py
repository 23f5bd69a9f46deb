"""fetch -> diff -> transform -> publish -> save state, on a real Redis."""

from __future__ import annotations

import hashlib

import orjson
import pytest
import structlog
from redis.asyncio import Redis

from framework.core.errors import LeaseLostError, StateConflictError
from framework.polling.lease import Lease
from framework.polling.poller import PollSummary, content_version
from tests.helpers import ListSource, make_connector, stream_items


def items(*pairs: tuple[str, int]) -> list[dict[str, object]]:
    return [{"id": i, "value": v} for i, v in pairs]


async def test_first_poll_publishes_every_item_with_its_fields(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)))
    connector, _ = await make_connector(redis, source)

    summary = await connector.poll()

    assert summary == PollSummary(fetched=2, published=2)
    entries = await stream_items(redis)
    assert [(e["connector"], e["type"], e["item_id"]) for e in entries] == [
        ("test-source", "TEST", "a"), ("test-source", "TEST", "b")]
    assert orjson.loads(entries[0]["payload"]) == {"id": "a", "value": 1}
    assert entries[0]["version"] == content_version({"id": "a", "value": 1})
    versions = await redis.hgetall("connector:state:test-source:versions")
    assert versions == {"a": entries[0]["version"], "b": entries[1]["version"]}


async def test_unchanged_items_are_skipped(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)))
    connector, _ = await make_connector(redis, source)
    await connector.poll()

    summary = await connector.poll()

    assert summary == PollSummary(fetched=2, published=0, skipped_unchanged=2)
    assert await redis.xlen("raw-input-signals") == 2


async def test_changed_item_is_republished_alone(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)))
    connector, _ = await make_connector(redis, source)
    await connector.poll()
    source.items = items(("a", 1), ("b", 3))

    summary = await connector.poll()

    assert summary == PollSummary(fetched=2, published=1, skipped_unchanged=1)
    last = (await stream_items(redis))[-1]
    assert last["item_id"] == "b" and orjson.loads(last["payload"])["value"] == 3


async def test_items_gone_from_a_complete_source_are_pruned(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)))
    connector, _ = await make_connector(redis, source)
    await connector.poll()
    source.items = items(("a", 1))

    summary = await connector.poll()

    assert summary.removed == 1
    assert await redis.hkeys("connector:state:test-source:versions") == ["a"]
    # If it comes back it is new again, hence published again.
    source.items = items(("a", 1), ("b", 2))
    assert (await connector.poll()).published == 1


async def test_incremental_source_never_prunes(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)), complete=False)
    connector, _ = await make_connector(redis, source)
    await connector.poll()
    source.items = items(("c", 3))

    summary = await connector.poll()

    assert summary.removed == 0 and summary.published == 1
    assert sorted(await redis.hkeys("connector:state:test-source:versions")) == ["a", "b", "c"]


async def test_bad_items_are_counted_and_the_others_published(redis: Redis) -> None:
    source = ListSource([
        {"id": "a", "value": 1},
        {"id": "bad", "poison": True},
        {"value": "no id"},
        {"id": "a", "value": 99},  # a duplicate id in one fetch
        {"id": "c", "value": 3},
    ])
    connector, _ = await make_connector(redis, source)

    summary = await connector.poll()

    assert summary == PollSummary(fetched=5, published=2, failed=3)
    assert [e["item_id"] for e in await stream_items(redis)] == ["a", "c"]
    # The poisoned item has no recorded version, so it is retried at the next poll.
    assert "bad" not in await redis.hkeys("connector:state:test-source:versions")
    source.items = [{"id": "a", "value": 1}, {"id": "bad", "value": 2}, {"id": "c", "value": 3}]
    assert (await connector.poll()).published == 1


async def test_bad_items_in_any_batch_fail_alone_with_their_position(redis: Redis) -> None:
    # Several batches (framework.polling.diff): bad items in the middle of some, a
    # duplicate of an item of an earlier batch, a duplicate within one batch.
    raw: list[dict[str, object]] = [{"id": f"i{n}", "value": n} for n in range(300)]
    raw[70] = {"value": "no id"}
    raw[130] = {"id": "i10", "value": -1}
    raw[140] = {"id": "i135", "value": -2}
    raw[150] = {"id": "i150", "poison": True}
    connector, _ = await make_connector(redis, ListSource(raw))

    with structlog.testing.capture_logs() as logs:
        summary = await connector.poll()

    assert summary == PollSummary(fetched=300, published=296, failed=4)
    failures = [entry for entry in logs if entry["event"] == "item_failed"]
    assert [(f["position"], f["item_id"]) for f in failures] == [
        (70, ""), (130, "i10"), (140, "i135"), (150, "i150")]
    published = [e["item_id"] for e in await stream_items(redis)]
    assert published == [f"i{n}" for n in range(300) if n not in (70, 130, 140, 150)]
    values = {e["item_id"]: orjson.loads(e["payload"])["value"] for e in await stream_items(redis)}
    assert values["i10"] == 10 and values["i135"] == 135  # the first copies were kept


async def test_a_connector_without_the_lease_cannot_publish(redis: Redis) -> None:
    source = ListSource(items(("a", 1)))
    connector, lease = await make_connector(redis, source)
    await redis.set("lease:test-source", "someone-else")

    with pytest.raises(LeaseLostError, match="someone-else"):
        await connector.poll()

    assert await redis.xlen("raw-input-signals") == 0
    assert not await redis.exists("connector:state:test-source:versions")


async def test_an_expired_lease_fences_commits_too(redis: Redis) -> None:
    source = ListSource(items(("a", 1)))
    connector, lease = await make_connector(redis, source)
    await redis.delete("lease:test-source")

    with pytest.raises(LeaseLostError, match=r"\(none\)"):
        await connector.poll()
    assert await redis.xlen("raw-input-signals") == 0


async def test_state_changed_under_the_connector_is_a_conflict_then_reloaded(
    redis: Redis,
) -> None:
    source = ListSource(items(("a", 1)))
    connector, lease = await make_connector(redis, source)
    await connector.poll()
    # Another writer commits between this connector's load and commit.
    other, _ = await make_connector(redis, ListSource(items(("a", 1), ("z", 9))), lease=lease)
    await other.poll()
    state_before = await connector._store.load()
    await redis.hincrby("connector:state:test-source", "generation", 1)
    source.items = items(("a", 2))

    with pytest.raises(StateConflictError):
        await connector._store.commit(state_before, [])

    summary = await connector.poll()  # reloads and succeeds
    assert summary.published == 1


async def test_state_reset_republishes_everything(redis: Redis) -> None:
    source = ListSource(items(("a", 1), ("b", 2)))
    connector, _ = await make_connector(redis, source)
    await connector.poll()
    await redis.delete("connector:state:test-source", "connector:state:test-source:versions")

    assert (await connector.poll()).published == 2


async def test_chunked_commit_publishes_each_item_once(redis: Redis) -> None:
    source = ListSource(items(*[(f"i{n}", n) for n in range(25)]))
    connector, _ = await make_connector(redis, source, chunk_items=10)

    summary = await connector.poll()

    assert summary.published == 25
    assert await redis.hget("connector:state:test-source", "generation") == "3"
    assert sorted(e["item_id"] for e in await stream_items(redis)) == sorted(
        f"i{n}" for n in range(25))
    assert (await connector.poll()).published == 0


async def test_stream_is_capped_with_approximate_maxlen(redis: Redis) -> None:
    source = ListSource(items(*[(f"i{n}", n) for n in range(3000)]))
    connector, _ = await make_connector(redis, source, stream_max_len=100)

    await connector.poll()

    # Approximate trimming removes whole nodes: never below the cap, far below 3000.
    assert 100 <= await redis.xlen("raw-input-signals") < 1000


async def test_output_stream_is_configurable(redis: Redis) -> None:
    connector, _ = await make_connector(redis, ListSource(items(("a", 1))), output_stream="alt")
    await connector.poll()
    assert await redis.xlen("alt") == 1 and await redis.xlen("raw-input-signals") == 0


async def test_lease_is_exclusive_and_released_only_by_its_owner(redis: Redis) -> None:
    first = Lease(redis, "x", ttl_s=30)
    second = Lease(redis, "x", ttl_s=30)

    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert not await second.release()
    assert await redis.get("lease:x") == first.token
    assert 29_000 < await redis.pttl("lease:x") <= 30_000
    assert await first.renew()
    assert await first.release()
    assert await second.try_acquire()
    assert not await first.renew()
    assert first.held is False


async def test_cursors_and_validators_are_saved_and_given_back(redis: Redis) -> None:
    from framework.polling.poller import FetchResult, SourceParts, UniversalPollingConnector
    from framework.polling.state import ConnectorState

    seen: list[ConnectorState] = []

    async def fetch(_: None, state: ConnectorState) -> FetchResult[dict[str, object]]:
        seen.append(state)
        page = len(seen)
        return FetchResult(items=[{"id": f"p{page}"}], complete=False, etag=f'"e{page}"',
                           last_modified="Fri, 20 Nov 2026 22:00:00 GMT",
                           cursors={"updatedSince": f"2026-11-2{page}"})

    _, lease = await make_connector(redis, ListSource())
    base, _ = await make_connector(redis, ListSource(), lease=lease)
    connector = UniversalPollingConnector[None, dict[str, object], dict[str, object]](
        config=base.config,
        parts=SourceParts(provider=None, fetcher=fetch, item_id=lambda raw: str(raw["id"]),
                          transformer=dict),
        store=base._store, logger=base._log,
    )

    await connector.poll()
    await connector.poll()

    assert seen[0].cursors == {} and seen[0].etag is None
    assert seen[1].cursors == {"updatedSince": "2026-11-21"} and seen[1].etag == '"e1"'
    assert seen[1].last_modified == "Fri, 20 Nov 2026 22:00:00 GMT"


def test_the_version_format_is_kept_as_stored_versions_depend_on_it() -> None:
    # Every stored version was made this way: another format would make every known
    # item look changed once, and republish it.
    expected = hashlib.blake2b(b'{"a":[1,{"c":null}],"b":"\xc3\xa9"}', digest_size=12)
    assert content_version({"b": "é", "a": [1, {"c": None}]}) == expected.hexdigest()
