"""The HTTP_JSON connector against a local server: the request as configured, JMESPath
items/id/version/fields, every pagination style, ETag, maxPages, failures mid-way,
auth and rate-limit errors, config errors, and a 10,000-item multi-page source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.core.errors import (
    ConfigError,
    MalformedResponseError,
    PermanentSourceError,
    RateLimitedError,
    TransientSourceError,
)
from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig, RetryConfig, load_fleet_config
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import RedisServer, ReplayServer, Reply
from framework.testing.contract import ContractClock
from framework.testing.replay_http import RecordedRequest
from providers.builtin import default_registry
from providers.http import HttpJsonItem, create_http_json_connector
from providers.http.contract_case import PATH, order, orders_page
from tests.conftest import FIXTURES, REPO_ROOT
from tests.helpers import stream_items
from tests.process import ConnectorProcess

NAME = "orders"
TOKEN = "s3cr3t-orders-token-value"
VERSIONS = f"connector:state:{NAME}:versions"

Connect = Callable[..., Any]


@pytest.fixture
def clock() -> ContractClock:
    return ContractClock()


@pytest.fixture
async def connect(
    redis: Redis, replay: ReplayServer, clock: ContractClock
) -> AsyncIterator[Callable[..., Any]]:
    """``await connect(**providerConfig overrides)``: an HTTP_JSON connector on the
    replay server (closed at the end of the test)."""
    lease = Lease(redis, NAME, ttl_s=30)
    assert await lease.try_acquire()
    built: list[PollingConnector] = []

    async def build(**provider: Any) -> PollingConnector:
        config = ConnectorConfig(
            name=NAME, type="HTTP_JSON", max_retries=2,
            retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=5000, jitter_ratio=0.0),
            provider_config={
                "url": replay.url + PATH, "headers": {"Authorization": f"Bearer {TOKEN}"},
                "params": {"status": "any"}, "itemsPath": "data.orders", "idField": "id",
                "versionField": "updated_at", **provider},
        )
        context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                                   clock=clock, logger=get_logger(connector=NAME))
        connector = create_http_json_connector(config, context)
        built.append(connector)
        return connector

    yield build
    for connector in built:
        await connector.aclose()


async def published(redis: Redis) -> list[tuple[str, str]]:
    return [(e["item_id"], e["version"]) for e in await stream_items(redis)]


async def published_ids(redis: Redis) -> list[str]:
    return [item_id for item_id, _ in await published(redis)]


def ids(*numbers: int) -> list[str]:
    return [str(1000 + n) for n in numbers]


# -- the request and the items ----------------------------------------------------------

async def test_items_ids_versions_and_fields_come_from_the_expressions(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1), order(2)]))
    connector = await connect(fields={"status": "status", "amount": "total.amount",
                                      "missing": "nothing.here"})

    summary = await connector.poll()

    assert (summary.fetched, summary.published) == (2, 2)
    (request,) = replay.requests_to(PATH)
    assert request.method == "GET" and request.query == {"status": "any"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert await published(redis) == [("1001", "2026-11-20T10:00:00Z"),
                                      ("1002", "2026-11-20T10:00:00Z")]
    signal = HttpJsonItem.model_validate(orjson.loads((await stream_items(redis))[1]["payload"]))
    assert signal == HttpJsonItem(
        connector=NAME, id="1002", version="2026-11-20T10:00:00Z",
        fields={"status": "open", "amount": "6.50", "missing": None}, item=order(2))


async def test_post_sends_the_configured_json_body(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1)]))
    query = {"filter": {"status": ["open", "shipped"]}, "sort": "-updated_at"}
    connector = await connect(method="POST", body=query)

    await connector.poll()

    (request,) = replay.requests_to(PATH)
    assert request.method == "POST" and orjson.loads(request.body) == query
    assert request.headers["content-type"] == "application/json"
    assert await published_ids(redis) == ids(1)


async def test_without_version_field_a_content_change_is_a_new_version(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    changed = {**order(2), "status": "cancelled"}  # same updated_at, different content
    replay.route(PATH, orders_page([order(1), order(2)]), orders_page([order(1), changed]))
    connector = await connect(versionField=None)

    await connector.poll()
    summary = await connector.poll()

    assert (summary.published, summary.skipped_unchanged) == (1, 1)
    assert await published_ids(redis) == ids(1, 2, 2)


async def test_a_bad_item_is_isolated_and_a_bad_body_is_a_clear_error(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    no_id = {**order(2), "id": None}
    no_version = {**order(3), "updated_at": None}
    replay.route(PATH, orders_page([order(1), no_id, no_version, order(4)]))
    connector = await connect()

    summary = await connector.poll()

    assert (summary.published, summary.failed) == (2, 2)
    assert await published_ids(redis) == ids(1, 4)
    replay.route(PATH, Reply(body={"data": {"orders": {"1001": order(1)}}}))
    with pytest.raises(MalformedResponseError, match=r"/v1/orders: itemsPath 'data.orders' "
                       r"gave an object with keys 1001, not a list"):
        await connector.poll()
    replay.route(PATH, Reply(body=b"<html>502 Bad Gateway</html>", content_type="text/html"))
    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        await connector.poll()


async def test_a_complete_source_forgets_removed_ids_an_incremental_one_does_not(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1), order(2)]), orders_page([order(2)]))
    complete = await connect()
    await complete.poll()
    assert (await complete.poll()).removed == 1
    assert await redis.hkeys(VERSIONS) == ["1002"]

    replay.route(PATH, orders_page([order(3)]))
    feed = await connect(complete=False)
    summary = await feed.poll()
    assert (summary.published, summary.removed) == (1, 0)
    assert sorted(await redis.hkeys(VERSIONS)) == ["1002", "1003"]


# -- conditional requests -----------------------------------------------------------------

async def test_etag_is_sent_back_and_304_publishes_nothing(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1)], etag='W/"v1"'))
    connector = await connect()
    await connector.poll()

    summary = await connector.poll()

    assert summary.not_modified and summary.published == 0
    assert replay.requests_to(PATH)[1].headers["if-none-match"] == 'W/"v1"'
    assert await published_ids(redis) == ids(1)


# -- pagination ---------------------------------------------------------------------------

async def test_next_link_in_the_body_relative_or_absolute(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1)], next_url=f"{PATH}?page=2&status=any"),
                 orders_page([order(2)], next_url=f"{replay.url}{PATH}?page=3&status=any"),
                 orders_page([order(3)], next_url=None))
    connector = await connect(pagination={"style": "nextLink", "nextUrlPath": "links.next"})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 3)
    assert [r.query for r in replay.requests_to(PATH)] == [
        {"status": "any"}, {"page": "2", "status": "any"}, {"page": "3", "status": "any"}]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in replay.requests)
    assert await published_ids(redis) == ids(1, 2, 3)


async def test_link_header_rel_next(connect: Connect, replay: ReplayServer, redis: Redis) -> None:
    def link(page: int) -> dict[str, str]:
        return {"Link": f'<{replay.url}{PATH}?page={page}>; rel="next", '
                        f'<{replay.url}{PATH}?page=3>; rel="last"'}

    replay.route(PATH, orders_page([order(1)], headers=link(2)),
                 orders_page([order(2)], headers=link(3)),
                 orders_page([order(3)], headers={"Link": f'<{replay.url}{PATH}?page=1>; '
                                                           'rel="first"'}))
    connector = await connect(pagination={"style": "linkHeader"})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 3)
    assert [r.query.get("page") for r in replay.requests_to(PATH)] == [None, "2", "3"]


def paged_by_query(items: list[dict[str, Any]], param: str, size: int,
                   *, offset: bool = False, first: int = 1) -> Callable[[RecordedRequest], Reply]:
    def reply(request: RecordedRequest) -> Reply:
        position = int(request.query[param])
        start = position if offset else (position - first) * size
        return orders_page(items[start:start + size])

    return reply


async def test_page_numbers_stop_on_a_short_page(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, paged_by_query([order(n) for n in range(1, 6)], "p", 2))
    connector = await connect(pagination={"style": "page", "param": "p", "sizeParam": "per_page",
                                          "size": 2})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 5)
    assert [r.query for r in replay.requests_to(PATH)] == [
        {"status": "any", "p": str(n), "per_page": "2"} for n in (1, 2, 3)]


async def test_page_numbers_without_a_size_stop_on_an_empty_page(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, paged_by_query([order(n) for n in range(1, 5)], "page", 2, first=0))
    connector = await connect(pagination={"style": "page", "start": 0})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 4)  # the third page is empty
    assert await published_ids(redis) == ids(1, 2, 3, 4)


async def test_offsets_move_by_the_items_received(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, paged_by_query([order(n) for n in range(1, 8)], "offset", 3, offset=True))
    connector = await connect(pagination={"style": "offset", "sizeParam": "limit", "size": 3})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 7)
    assert [r.query["offset"] for r in replay.requests_to(PATH)] == ["0", "3", "6"]
    assert {r.query["limit"] for r in replay.requests_to(PATH)} == {"3"}


async def test_cursor_from_the_body_is_sent_back_until_it_is_null(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    def page(orders: list[dict[str, Any]], cursor: str | None) -> Reply:
        return Reply(body={"orders": orders, "response_metadata": {"next_cursor": cursor}})

    replay.route(PATH, page([order(1), order(2)], "dXNlcjpVMEc5V0ZYTlo="),
                 page([order(3)], "dXNlcjpVMEc5V0ZYTla="), page([order(4)], ""))
    connector = await connect(itemsPath="orders", pagination={
        "style": "cursor", "cursorPath": "response_metadata.next_cursor", "param": "after"})

    summary = await connector.poll()

    assert (summary.pages, summary.published) == (3, 4)
    assert [r.query.get("after") for r in replay.requests_to(PATH)] == [
        None, "dXNlcjpVMEc5V0ZYTlo=", "dXNlcjpVMEc5V0ZYTla="]
    assert {r.query["status"] for r in replay.requests_to(PATH)} == {"any"}


async def test_a_pagination_loop_is_a_clear_error(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1)], next_url=f"{PATH}?page=2"),
                 orders_page([order(2)], next_url=f"{PATH}?page=2"))
    connector = await connect(pagination={"style": "nextLink", "nextUrlPath": "links.next"})

    with pytest.raises(MalformedResponseError, match="pagination loops: the next link"):
        await connector.poll()

    assert await published_ids(redis) == ids(1, 2)  # the pages before the loop were published


async def test_max_pages_ends_the_poll_without_forgetting_anything(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, paged_by_query([order(n) for n in range(1, 11)], "page", 2))
    connector = await connect(maxPages=3, pagination={"style": "page", "sizeParam": "size",
                                                      "size": 2})
    everything = await connect(pagination={"style": "page", "sizeParam": "size", "size": 2})
    await everything.poll()

    summary = await connector.poll()

    assert (summary.pages, summary.removed) == (3, 0)
    assert len(await redis.hkeys(VERSIONS)) == 10  # ids on pages 4 and 5 are not pruned


async def test_a_page_failing_mid_way_publishes_the_pages_before_it_once(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    failing = Reply(503, {"error": "upstream unavailable"})
    replay.route(PATH, orders_page([order(1), order(2)], next_url=f"{PATH}?page=2"),
                 orders_page([order(3)], next_url=f"{PATH}?page=3"), failing, failing, failing)
    connector = await connect(pagination={"style": "nextLink", "nextUrlPath": "links.next"})

    with pytest.raises(TransientSourceError, match="503"):
        await connector.poll()

    assert await published_ids(redis) == ids(1, 2, 3)
    replay.route(PATH, orders_page([order(1), order(2)], next_url=f"{PATH}?page=2"),
                 orders_page([order(3)], next_url=f"{PATH}?page=3"),
                 orders_page([order(4, revision=1)]))
    summary = await connector.poll()

    assert (summary.published, summary.skipped_unchanged) == (1, 3)
    assert await published_ids(redis) == ids(1, 2, 3, 4)


# -- errors ---------------------------------------------------------------------------------

async def test_401_is_one_request_and_a_clear_error_without_the_token(
    connect: Connect, replay: ReplayServer, redis: Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    replay.route(PATH, Reply(401, {"message": "Bad credentials"},
                             headers={"WWW-Authenticate": 'Bearer realm="orders"'}))
    connector = await connect(pagination={"style": "linkHeader"})

    with pytest.raises(PermanentSourceError) as caught:
        await connector.poll()

    assert str(caught.value).startswith(f"connector {NAME}: GET ")
    assert "answered 401 Unauthorized" in str(caught.value) and "Bad credentials" in str(
        caught.value)
    assert len(replay.requests_to(PATH)) == 1
    assert not await redis.exists(f"connector:state:{NAME}")
    output = capfd.readouterr()
    assert TOKEN not in str(caught.value) + output.out + output.err


async def test_429_retry_after_is_honoured_and_a_long_one_ends_the_poll(
    connect: Connect, replay: ReplayServer, redis: Redis, clock: ContractClock
) -> None:
    replay.route(PATH, Reply(429, {"message": "slow down"}, headers={"Retry-After": "2"}),
                 orders_page([order(1)]))
    connector = await connect()
    assert (await connector.poll()).published == 1
    assert clock.sleeps == [2.0]

    replay.route(PATH, Reply(429, {"message": "slow down"}, headers={"Retry-After": "900"}))
    with pytest.raises(RateLimitedError) as caught:
        await connector.poll()
    assert caught.value.retry_after_s == 900 and len(replay.requests_to(PATH)) == 3


@pytest.mark.parametrize(("provider", "expected"), [
    ({"url": None}, "HTTP_JSON connector orders: url is required"),
    ({"idField": ""}, "HTTP_JSON connector orders: idField is required"),
    ({"itemsPath": "data.orders["},
     "providerConfig.itemsPath: Value error, invalid JMESPath expression 'data.orders[': "
     "the expression ends too early at position 12"),
    ({"versionField": "updated_at ||"},
     "providerConfig.versionField: Value error, invalid JMESPath expression 'updated_at ||'"),
    ({"fields": {"title": "a..b"}}, "providerConfig.fields.title: Value error, invalid JMESPath"),
    ({"pagination": {"style": "cursor", "cursorPath": "meta.[next"}},
     "providerConfig.pagination.cursor.cursorPath: Value error, invalid JMESPath expression "
     "'meta.[next'"),
    ({"pagination": {"style": "cursor"}}, "providerConfig.pagination.cursor.cursorPath: "
                                          "Field required"),
    ({"pagination": {"style": "pages"}}, "providerConfig.pagination: Input tag 'pages' found "
                                         "using 'style' does not match any of the expected tags"),
    ({"body": {"q": 1}}, "providerConfig: Value error, body is only sent with method POST"),
    ({"method": "DELETE"}, "providerConfig.method: Input should be 'GET' or 'POST'"),
    ({"itemPath": "data"}, "providerConfig.itemPath: unknown field"),
])
async def test_config_errors_name_the_field_and_the_expression(
    connect: Connect, provider: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await connect(**provider)

    assert expected in str(caught.value)
    assert str(caught.value).startswith("HTTP_JSON connector orders: ")
    assert TOKEN not in str(caught.value)


# -- a large source -----------------------------------------------------------------------

class LargeSource:
    """10,000 orders served 500 per page (``?page=N&per_page=500``); ``fail_page``
    answers 500 to every attempt of one poll (three); ``revise`` gives some orders a
    new version."""

    size = 10_000

    def __init__(self) -> None:
        self.revisions = [0] * self.size
        self.fail_page: int | None = None
        self.failures_left = 0

    def reply(self, request: RecordedRequest) -> Reply:
        page, per_page = int(request.query["page"]), int(request.query["per_page"])
        if page == self.fail_page and self.failures_left:
            self.failures_left -= 1
            return Reply(500, {"error": "internal"})
        start = (page - 1) * per_page
        numbers = range(start, min(start + per_page, self.size))
        return orders_page([order(n, self.revisions[n]) for n in numbers])

    def revise(self, numbers: range) -> None:
        for n in numbers:
            self.revisions[n] += 1

    def pairs(self) -> set[tuple[str, str]]:
        return {(str(1000 + n), order(n, r)["updated_at"]) for n, r in enumerate(self.revisions)}


async def test_ten_thousand_items_on_many_pages_are_published_once_per_version(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    source = LargeSource()
    replay.route(PATH, source.reply)
    connector = await connect(pagination={
        "style": "page", "sizeParam": "per_page", "size": 500})

    first = await connector.poll()
    # 20 full pages, then an empty 21st: a full page cannot tell it is the last.
    assert (first.pages, first.published) == (21, 10_000)
    seen = set(source.pairs())

    source.revise(range(4_000, 4_100))  # on page 9
    source.revise(range(9_900, 10_000))  # on page 20
    source.fail_page, source.failures_left = 12, 3
    with pytest.raises(TransientSourceError):
        await connector.poll()
    seen |= source.pairs()
    resumed = await connector.poll()
    assert (await connector.poll()).published == 0

    assert resumed.published == 100  # page 9's were published before the failure
    entries = await published(redis)
    assert len(entries) == len(set(entries)) == 10_200
    assert set(entries) == seen
    assert await redis.hlen(VERSIONS) == 10_000


# -- a source added by configuration alone ----------------------------------------------

async def test_the_connectors_json_example_runs_without_python(
    redis: Redis, replay: ReplayServer, clock: ContractClock, tmp_path: Path
) -> None:
    """The ``quakes-usgs`` entry of the repository's connectors.json, pointed at a
    recorded USGS feed: loaded, built by the registry, polled, published."""
    document = orjson.loads((REPO_ROOT / "connectors.json").read_bytes())
    document["connectors"] = [e for e in document["connectors"] if e["name"] == "quakes-usgs"]
    (tmp_path / "connectors.json").write_bytes(orjson.dumps(document))
    feed = "/earthquakes/feed/v1.0/summary/4.5_day.geojson"
    replay.route(feed, Reply.from_file(FIXTURES / "http_json" / "usgs_4.5_day.geojson",
                                       content_type="application/geo+json", etag='"feed-1"'))
    fleet = load_fleet_config(tmp_path / "connectors.json",
                              environ={"USGS_FEED_URL": replay.url + feed})
    config = fleet.connectors["quakes-usgs"]
    lease = Lease(redis, config.name, ttl_s=30)
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock), clock=clock,
                               logger=get_logger(connector=config.name))
    connector = default_registry().create(config, context)
    try:
        first = await connector.poll()
        second = await connector.poll()
    finally:
        await connector.aclose()

    assert (first.published, second.not_modified) == (2, True)
    entries = await stream_items(redis)
    assert [(e["item_id"], e["version"]) for e in entries] == [
        ("us7000q1ab", "1799994612040"), ("us7000q19z", "1799985600000")]
    quake = HttpJsonItem.model_validate(orjson.loads(entries[0]["payload"]))
    assert quake.fields == {
        "title": "M 5.1 - 112 km SSE of Kokopo, Papua New Guinea", "magnitude": 5.1,
        "time": 1799991012345, "url": "https://earthquake.usgs.gov/earthquakes/eventpage/"
                                      "us7000q1ab"}
    assert quake.item["geometry"]["coordinates"] == [152.6481, -5.3012, 35.0]


async def test_a_next_link_to_another_host_is_not_followed_with_the_credentials(
    connect: Connect, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, orders_page([order(1)], next_url="https://collector.example.net/steal"))
    connector = await connect(pagination={"style": "nextLink", "nextUrlPath": "links.next"})

    with pytest.raises(MalformedResponseError, match="next link leads to "
                       "https://collector.example.net, not to the configured http://127.0.0.1"):
        await connector.poll()

    assert len(replay.requests) == 1 and await published_ids(redis) == ids(1)


def test_connector_run_once_polls_the_example_source(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer, sync: sync_redis.Redis
) -> None:
    """The same example through the real CLI: ``connector-run quakes-usgs --once``."""
    document = orjson.loads((REPO_ROOT / "connectors.json").read_bytes())
    document["connectors"] = [e for e in document["connectors"] if e["name"] == "quakes-usgs"]
    config = tmp_path / "connectors.json"
    config.write_bytes(orjson.dumps(document))
    feed = "/earthquakes/feed/v1.0/summary/4.5_day.geojson"
    replay.route(feed, Reply.from_file(FIXTURES / "http_json" / "usgs_4.5_day.geojson",
                                       content_type="application/geo+json"))
    worker = ConnectorProcess("quakes-usgs", redis_url=redis_server.url, config=config,
                              log=tmp_path / "worker.log", args=("--once",),
                              env={"USGS_FEED_URL": replay.url + feed})
    try:
        assert worker.wait() == 0
    finally:
        worker.close()

    entries = [fields for _, fields in sync.xrange("raw-input-signals")]
    assert [(e["connector"], e["type"], e["item_id"]) for e in entries] == [
        ("quakes-usgs", "HTTP_JSON", "us7000q1ab"), ("quakes-usgs", "HTTP_JSON", "us7000q19z")]
