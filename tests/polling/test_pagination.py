"""framework.polling.pagination: each paginator walking a real local HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jmespath
import pytest

from framework.core.errors import MalformedResponseError
from framework.core.logs import get_logger
from framework.polling import (
    CursorParam,
    HttpClient,
    LinkHeader,
    NextLink,
    Offset,
    Page,
    PageNumber,
    PageRequest,
    Paginator,
    SinglePage,
    walk_pages,
)
from framework.polling.config import ConnectorConfig
from framework.testing import ReplayServer, Reply
from framework.testing.replay_http import RecordedRequest
from tests.helpers import ManualClock

PATH = "/v1/things"


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    config = ConnectorConfig(name="paging", type="TEST", max_retries=0)
    client = HttpClient(config, clock=ManualClock(), logger=get_logger(connector="paging"))
    yield client
    await client.aclose()


def things(body: Any, request: PageRequest) -> list[Any]:
    items = body["things"] if isinstance(body, dict) else body
    assert isinstance(items, list)
    return items


async def walk(
    http: HttpClient, paginator: Paginator, first: PageRequest, **kwargs: Any
) -> list[Page]:
    return [page async for page in walk_pages(http, paginator, first, read_items=things,
                                              connector="paging", **kwargs)]


def item_numbers(pages: list[Page]) -> list[Any]:
    return [item for page in pages for item in page.items]


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="next"'}


async def test_link_header_pages_until_no_next_link(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[1, 2], headers=link(f"{PATH}?page=2")),
                 Reply(body=[3], headers=link(f"{replay.url}{PATH}?page=3")), Reply(body=[4]))

    pages = await walk(http, LinkHeader(), PageRequest(replay.url + PATH, params={"q": "x"}))

    assert item_numbers(pages) == [1, 2, 3, 4]
    assert [page.last for page in pages] == [False, False, True]
    assert [page.number for page in pages] == [1, 2, 3]
    assert [r.query for r in replay.requests_to(PATH)] == [{"q": "x"}, {"page": "2"},
                                                          {"page": "3"}]


async def test_a_link_to_another_origin_is_refused_after_its_page(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[1], headers=link("https://elsewhere.invalid/v1/things")))
    seen: list[Page] = []

    with pytest.raises(MalformedResponseError, match="next link leads to https://elsewhere"):
        async for page in walk_pages(http, LinkHeader(), PageRequest(replay.url + PATH),
                                     read_items=things, connector="paging"):
            seen.append(page)

    assert [(page.items, page.last) for page in seen] == [([1], False)]
    assert len(replay.requests_to(PATH)) == 1


async def test_a_link_back_to_a_page_already_read_is_a_loop(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[1], headers=link(f"{PATH}?page=2")),
                 Reply(body=[2], headers=link(f"{PATH}?page=2")))

    with pytest.raises(MalformedResponseError,
                       match=r"connector paging: /v1/things: pagination loops: the next link"):
        await walk(http, LinkHeader(), PageRequest(replay.url + PATH))
    assert len(replay.requests_to(PATH)) == 2


async def test_next_link_in_the_body_is_joined_to_the_page_url(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body={"things": [1], "next": "things?after=1"}),
                 Reply(body={"things": [2], "next": None}))

    pages = await walk(http, NextLink(jmespath.compile("next")), PageRequest(replay.url + PATH))

    assert item_numbers(pages) == [1, 2]
    assert replay.requests_to(PATH)[1].query == {"after": "1"}


async def test_a_next_link_that_is_no_string_is_malformed(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body={"things": [1], "next": {"href": "x"}}))

    with pytest.raises(MalformedResponseError,
                       match="connector paging: pagination expression 'next' gave a JSON dict"):
        await walk(http, NextLink(jmespath.compile("next")), PageRequest(replay.url + PATH))


async def test_cursor_is_sent_back_with_the_first_parameters_until_it_is_empty(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body={"things": [1, 2], "meta": {"after": "c1"}}),
                 Reply(body={"things": [3], "meta": {"after": "c2"}}),
                 Reply(body={"things": [], "meta": {"after": ""}}))
    paginator = CursorParam(jmespath.compile("meta.after"), param="page[cursor]")

    pages = await walk(http, paginator, PageRequest(replay.url + PATH, params={"limit": 2}))

    assert item_numbers(pages) == [1, 2, 3]
    assert [r.query for r in replay.requests_to(PATH)] == [
        {"limit": "2"}, {"limit": "2", "page[cursor]": "c1"},
        {"limit": "2", "page[cursor]": "c2"}]


async def test_a_cursor_that_comes_back_is_a_loop(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body={"things": [1], "after": "c1"}))

    with pytest.raises(MalformedResponseError, match="the cursor 'c1' leads to a page already"):
        await walk(http, CursorParam(jmespath.compile("after")), PageRequest(replay.url + PATH))
    assert len(replay.requests_to(PATH)) == 2


def numbered(request: RecordedRequest) -> Reply:
    """Pages of 2 of the items 1..5, by ``page`` (from 1) or by ``offset``."""
    size = 2
    if "offset" in request.query:
        start = int(request.query["offset"])
    else:
        start = (int(request.query["page"]) - 1) * size
    return Reply(body=list(range(1, 6))[start:start + size])


async def test_page_numbers_stop_at_a_short_page(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, numbered)
    paginator = PageNumber(param="page", start_at=1, size_param="per_page", size=2)

    pages = await walk(http, paginator, PageRequest(replay.url + PATH))

    assert item_numbers(pages) == [1, 2, 3, 4, 5]
    assert [r.query for r in replay.requests_to(PATH)] == [
        {"page": str(n), "per_page": "2"} for n in (1, 2, 3)]


async def test_offset_moves_by_the_items_received_and_stops_on_an_empty_page(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, numbered)

    pages = await walk(http, Offset(), PageRequest(replay.url + PATH))

    assert item_numbers(pages) == [1, 2, 3, 4, 5]
    assert [r.query["offset"] for r in replay.requests_to(PATH)] == ["0", "2", "4", "5"]
    assert pages[-1].items == [] and pages[-1].last


async def test_max_pages_ends_the_walk_before_the_last_page(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, numbered)

    pages = await walk(http, PageNumber(size=2), PageRequest(replay.url + PATH), max_pages=2)

    assert item_numbers(pages) == [1, 2, 3, 4]
    assert not pages[-1].last


async def test_a_single_page_answered_304_is_not_modified(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[1], etag='"v1"'))
    first = PageRequest(replay.url + PATH, headers={"If-None-Match": '"v1"'})

    (page,) = await walk(http, SinglePage(), first)

    assert page.not_modified and page.items == []


async def test_every_page_repeats_the_method_and_body_but_not_the_conditional_headers(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[1], headers=link(f"{PATH}?page=2")), Reply(body=[2]))
    first = PageRequest(replay.url + PATH, method="POST", json={"query": "open"},
                        headers={"If-Modified-Since": "Tue, 01 Dec 2026 10:00:00 GMT"})

    await walk(http, LinkHeader(), first)

    requests = replay.requests_to(PATH)
    assert [(r.method, r.body) for r in requests] == [("POST", b'{"query":"open"}')] * 2
    assert "if-modified-since" in requests[0].headers
    assert "if-modified-since" not in requests[1].headers
