"""Paged fetches: every page is one atomic commit, so a failure mid-way keeps what
was published before it and the cursor after it, and the next poll resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from framework.core.errors import TransientSourceError
from framework.core.logs import get_logger
from framework.polling.poller import (
    FetchResult,
    PollSummary,
    SourceParts,
    UniversalPollingConnector,
)
from framework.polling.state import ConnectorState, StateStore
from tests.helpers import ListSource, make_connector, stream_items

Item = dict[str, object]


@dataclass
class PagedSource:
    """Items ordered by ``updated``; a page is the next ``page_size`` items after
    the cursor. ``fail_at_page`` makes that page's request fail once."""

    items: list[Item]
    page_size: int = 2
    complete: bool = False
    fail_at_page: int | None = None
    requested_after: list[int] = field(default_factory=list)


async def fetch_pages(
        source: PagedSource, state: ConnectorState) -> AsyncIterator[FetchResult[Item]]:
    after = int(state.cursors.get("updatedAfter", "-1"))
    page = 0
    while True:
        page += 1
        source.requested_after.append(after)
        if page == source.fail_at_page:
            source.fail_at_page = None
            raise TransientSourceError("page request failed", connector="paged")
        batch = [i for i in source.items if int(str(i["updated"])) > after][: source.page_size]
        last = len(batch) < source.page_size
        if batch:
            after = int(str(batch[-1]["updated"]))
        yield FetchResult(items=batch, complete=source.complete and last,
                          cursors={"updatedAfter": str(after)})
        if last:
            return


async def make_paged(redis: Redis, source: PagedSource) -> UniversalPollingConnector[
        PagedSource, Item, Item]:
    base, _ = await make_connector(redis, ListSource(), name="paged")
    store: StateStore = base._store
    return UniversalPollingConnector[PagedSource, Item, Item](
        config=base.config,
        parts=SourceParts(provider=source, page_fetcher=fetch_pages,
                          item_id=lambda raw: str(raw["id"]), transformer=dict),
        store=store, logger=get_logger(connector="paged"),
    )


def numbered(count: int) -> list[Item]:
    return [{"id": f"i{n}", "updated": n} for n in range(count)]


async def published_ids(redis: Redis) -> list[str]:
    return [e["item_id"] for e in await stream_items(redis)]


async def test_every_page_is_published_and_the_summary_adds_them_up(redis: Redis) -> None:
    connector = await make_paged(redis, PagedSource(numbered(5)))

    summary = await connector.poll()

    assert summary == PollSummary(fetched=5, published=5, pages=3)
    assert await published_ids(redis) == [f"i{n}" for n in range(5)]
    state = await redis.hgetall("connector:state:paged")
    assert state["cursors"] == '{"updatedAfter":"4"}'


async def test_a_failed_page_keeps_the_pages_before_it_and_the_next_poll_resumes(
        redis: Redis) -> None:
    source = PagedSource(numbered(7), fail_at_page=3)
    connector = await make_paged(redis, source)

    with pytest.raises(TransientSourceError):
        await connector.poll()

    assert await published_ids(redis) == ["i0", "i1", "i2", "i3"]
    assert (await redis.hgetall("connector:state:paged"))["cursors"] == '{"updatedAfter":"3"}'

    summary = await connector.poll()

    # Poll 1 asked after -1, 1, then 3 (failed); poll 2 resumes after 3.
    assert source.requested_after == [-1, 1, 3, 3, 5]
    assert summary.published == 3
    assert await published_ids(redis) == [f"i{n}" for n in range(7)]


async def test_the_same_version_on_a_later_page_is_skipped_a_newer_one_published(
        redis: Redis) -> None:
    source = PagedSource([{"id": "a", "updated": 1}, {"id": "b", "updated": 2}])
    connector = await make_paged(redis, source)
    await connector.poll()
    # The overlap of an ``updated >=`` cursor returns "b" again; "a" was edited.
    source.items = [{"id": "b", "updated": 2}, {"id": "a", "updated": 3}]
    await redis.hset("connector:state:paged", "cursors", '{"updatedAfter":"1"}')

    summary = await connector.poll()

    assert (summary.published, summary.skipped_unchanged) == (1, 1)
    assert await published_ids(redis) == ["a", "b", "a"]


async def test_a_complete_paged_fetch_prunes_ids_no_page_held(redis: Redis) -> None:
    source = PagedSource(numbered(5), complete=True)
    connector = await make_paged(redis, source)
    await connector.poll()
    source.items = numbered(3)
    await redis.hdel("connector:state:paged", "cursors")

    summary = await connector.poll()

    assert summary.removed == 2
    assert sorted(await redis.hkeys("connector:state:paged:versions")) == ["i0", "i1", "i2"]


async def test_an_incomplete_paged_fetch_prunes_nothing(redis: Redis) -> None:
    source = PagedSource(numbered(4))
    connector = await make_paged(redis, source)
    await connector.poll()
    source.items = []

    summary = await connector.poll()

    assert summary.removed == 0
    assert len(await redis.hkeys("connector:state:paged:versions")) == 4


async def test_a_first_page_not_modified_ends_the_poll_and_closes_the_generator(
        redis: Redis) -> None:
    closed: list[bool] = []

    async def not_modified(_: None, __: ConnectorState) -> AsyncIterator[FetchResult[Item]]:
        try:
            yield FetchResult(not_modified=True)
            yield FetchResult(items=[{"id": "never"}])
        finally:
            closed.append(True)

    base, _ = await make_connector(redis, ListSource(), name="paged")
    connector = UniversalPollingConnector[None, Item, Item](
        config=base.config,
        parts=SourceParts(provider=None, page_fetcher=not_modified,
                          item_id=lambda raw: str(raw["id"]), transformer=dict),
        store=base._store, logger=base._log)

    assert await connector.poll() == PollSummary(not_modified=True)
    assert closed == [True]
    assert await redis.xlen("raw-input-signals") == 0


def test_exactly_one_kind_of_fetcher_is_required() -> None:
    with pytest.raises(TypeError, match="exactly one of fetcher= and page_fetcher="):
        SourceParts[None, Item, Item](provider=None, item_id=str, transformer=dict)
