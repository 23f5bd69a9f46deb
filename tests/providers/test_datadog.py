"""The DATADOG connector against a local server replaying ``GET /api/v2/events``:
request shape, time-window cursor with overlap, cursor paging, a page failing
mid-way, auth failures, Datadog's rate-limit headers, config errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.clock import iso_utc
from framework.core.errors import (
    ConfigError,
    MalformedResponseError,
    PermanentSourceError,
    RateLimitedError,
    TransientSourceError,
)
from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig, RetryConfig
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import ReplayServer, Reply
from framework.testing.contract import ContractClock
from providers.datadog import DatadogConfig, DatadogEvent, create_datadog_connector
from providers.datadog.connector import EVENTS_PATH
from providers.datadog.contract_case import event, event_key, events_page
from tests.conftest import FIXTURES
from tests.helpers import stream_items

NAME = "dd-events"
API_KEY = "0123456789abcdef0123456789abcdef"
APP_KEY = "fedcba9876543210fedcba9876543210fedcba98"
NOW = "2027-01-15T08:00:00.000Z"  # ContractClock's start
FORBIDDEN = {"errors": ["Forbidden"]}

Build = Callable[..., AsyncIterator[PollingConnector]]


@pytest.fixture
def clock() -> ContractClock:
    return ContractClock()


def dd_config(replay: ReplayServer, **provider: Any) -> ConnectorConfig:
    return ConnectorConfig(
        name=NAME, type="DATADOG", max_retries=2,
        retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=5000, jitter_ratio=0.0),
        provider_config={"apiKey": API_KEY, "appKey": APP_KEY, "baseUrl": replay.url,
                         "query": "source:alert status:error", "pageLimit": 2,
                         "initialLookbackS": 3600, "overlapS": 120, **provider},
    )


@pytest.fixture
async def lease(redis: Redis) -> Lease:
    lease = Lease(redis, NAME, ttl_s=30)
    assert await lease.try_acquire()
    return lease


async def build(redis: Redis, lease: Lease, clock: ContractClock,
                config: ConnectorConfig) -> PollingConnector:
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                               clock=clock, logger=get_logger(connector=NAME))
    return create_datadog_connector(config, context)


@pytest.fixture
async def datadog(
    redis: Redis, replay: ReplayServer, clock: ContractClock, lease: Lease
) -> AsyncIterator[PollingConnector]:
    connector = await build(redis, lease, clock, dd_config(replay))
    yield connector
    await connector.aclose()


async def published_ids(redis: Redis) -> list[str]:
    return [entry["item_id"] for entry in await stream_items(redis)]


async def saved_from(redis: Redis) -> str:
    cursors = await redis.hget(f"connector:state:{NAME}", "cursors")
    return str(orjson.loads(cursors or "{}")["from"])


async def test_first_poll_asks_for_the_lookback_window_with_both_keys(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(EVENTS_PATH, events_page([event(1)]))

    summary = await datadog.poll()

    assert (summary.fetched, summary.published) == (1, 1)
    (request,) = replay.requests_to(EVENTS_PATH)
    assert request.headers["dd-api-key"] == API_KEY
    assert request.headers["dd-application-key"] == APP_KEY
    assert request.query == {
        "filter[query]": "source:alert status:error",
        "filter[from]": "2027-01-15T06:58:00.000Z",  # now - 3600 s lookback - 120 s overlap
        "filter[to]": NOW, "sort": "timestamp", "page[limit]": "2"}
    assert await saved_from(redis) == NOW


async def test_an_event_becomes_a_documented_signal(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(EVENTS_PATH, Reply.from_file(FIXTURES / "datadog" / "events_page.json"))

    await datadog.poll()

    entries = await stream_items(redis)
    assert [e["item_id"] for e in entries] == ["AAAAAZNh8r2Q0WmFAAAAAABBWk5oOHIyUUFBQ3Vx",
                                               "AAAAAZNh9A1v2hTcAAAAAABBWk5oOUExdkFBQjVt"]
    alert = DatadogEvent.model_validate(orjson.loads(entries[0]["payload"]))
    assert alert == DatadogEvent(
        id="AAAAAZNh8r2Q0WmFAAAAAABBWk5oOHIyUUFBQ3Vx", timestamp="2027-01-15T07:41:12.345Z",
        title="[Triggered on {host:web-3}] CPU usage is high",
        message="%%%\nCPU usage is above 90% on web-3 for the last 5 minutes.\n%%%",
        status="error", priority="normal", service="checkout", hostname="web-3",
        sourceTypeName="Monitor Alert", monitorId=123456, monitorGroups=["host:web-3"],
        aggregationKey="d5b4c9e1c7f33b1c6ab1e5c4d0b1e2f3",
        tags=["env:prod", "host:web-3", "monitor", "service:checkout"])
    deploy = DatadogEvent.model_validate(orjson.loads(entries[1]["payload"]))
    assert (deploy.title, deploy.status, deploy.monitorId, deploy.monitorGroups) == (
        "Deployed checkout v2.14.0", "info", None, [])


async def test_next_window_starts_at_the_saved_cursor_minus_the_overlap(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis, clock: ContractClock
) -> None:
    replay.route(EVENTS_PATH, events_page([event(1), event(2)]),
                 events_page([event(2), event(3)]))
    await datadog.poll()
    clock.now_s += 300

    summary = await datadog.poll()

    second = replay.requests_to(EVENTS_PATH)[1].query
    assert (second["filter[from]"], second["filter[to]"]) == (
        "2027-01-15T07:58:00.000Z", "2027-01-15T08:05:00.000Z")
    assert (summary.published, summary.skipped_unchanged) == (1, 1)  # event 2 was in the overlap
    assert await published_ids(redis) == [event_key(1), event_key(2), event_key(3)]
    # The window moved past event 1: its version is forgotten, event 2's is kept.
    assert sorted(await redis.hkeys(f"connector:state:{NAME}:versions")) == [
        event_key(2), event_key(3)]


async def test_pages_are_followed_by_meta_page_after(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(EVENTS_PATH, events_page([event(1), event(2)], after="cursor-1"),
                 events_page([event(3), event(4)], after="cursor-2"), events_page([event(5)]))

    summary = await datadog.poll()

    assert (summary.pages, summary.published) == (3, 5)
    cursors = [r.query.get("page[cursor]") for r in replay.requests_to(EVENTS_PATH)]
    assert cursors == [None, "cursor-1", "cursor-2"]
    windows = {(r.query["filter[from]"], r.query["filter[to]"])
               for r in replay.requests_to(EVENTS_PATH)}
    assert len(windows) == 1  # every page of a poll asks for the same window
    assert await published_ids(redis) == [event_key(n) for n in range(1, 6)]


async def test_a_page_failing_mid_way_keeps_what_was_published_and_resumes_there(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis, clock: ContractClock
) -> None:
    page_one = events_page([event(1), event(2)], after="cursor-1")
    failing = Reply(500, {"errors": ["Internal Server Error"]})
    replay.route(EVENTS_PATH, page_one, failing, failing, failing)

    with pytest.raises(TransientSourceError, match="500"):
        await datadog.poll()

    assert await published_ids(redis) == [event_key(1), event_key(2)]
    assert await saved_from(redis) == event(2)["attributes"]["timestamp"]  # not the window end
    clock.now_s += 60
    window_end = iso_utc(clock.time())
    replay.route(EVENTS_PATH, events_page([event(2), event(3)], after="cursor-9"),
                 events_page([event(4)]))

    summary = await datadog.poll()

    resumed = replay.requests_to(EVENTS_PATH)[4].query
    assert resumed["filter[from]"] == "2027-01-15T06:58:02.000Z"  # event 2 - 120 s overlap
    assert "page[cursor]" not in resumed
    assert (summary.published, summary.skipped_unchanged) == (2, 1)
    assert await published_ids(redis) == [event_key(n) for n in (1, 2, 3, 4)]
    assert await saved_from(redis) == window_end


async def test_max_pages_stops_the_poll_and_the_next_one_continues(
    redis: Redis, replay: ReplayServer, clock: ContractClock, lease: Lease
) -> None:
    connector = await build(redis, lease, clock, dd_config(replay, maxPages=2))
    replay.route(EVENTS_PATH, events_page([event(1), event(2)], after="c1"),
                 events_page([event(3), event(4)], after="c2"),
                 events_page([event(4), event(5)]))
    try:
        first = await connector.poll()
        assert (first.pages, first.published) == (2, 4)
        assert len(replay.requests_to(EVENTS_PATH)) == 2
        assert await saved_from(redis) == event(4)["attributes"]["timestamp"]

        second = await connector.poll()
    finally:
        await connector.aclose()

    assert (second.published, second.skipped_unchanged) == (1, 1)
    assert await published_ids(redis) == [event_key(n) for n in range(1, 6)]


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_keys_fail_at_once_without_retry_or_secret(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis, status: int,
    capfd: pytest.CaptureFixture[str],
) -> None:
    replay.route(EVENTS_PATH, Reply(status, FORBIDDEN))

    with pytest.raises(PermanentSourceError) as caught:
        await datadog.poll()

    message = str(caught.value)
    assert f"connector {NAME}:" in message and f"answered {status}" in message
    assert "Forbidden" in message
    assert len(replay.requests_to(EVENTS_PATH)) == 1
    assert not await redis.exists(f"connector:state:{NAME}")
    output = capfd.readouterr()
    assert API_KEY not in message + output.err + output.out
    assert APP_KEY not in message + output.err + output.out


async def test_429_waits_for_x_ratelimit_reset_then_succeeds(
    datadog: PollingConnector, replay: ReplayServer, clock: ContractClock,
    capfd: pytest.CaptureFixture[str],
) -> None:
    limited = Reply(429, {"errors": ["Rate limit of 1000 requests in 3600 seconds reached."]},
                    headers={"X-RateLimit-Limit": "1000", "X-RateLimit-Period": "3600",
                             "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3",
                             "X-RateLimit-Name": "events_list"})
    replay.route(EVENTS_PATH, limited, events_page([event(1)]))

    summary = await datadog.poll()

    assert summary.published == 1
    assert clock.sleeps == [3.0]
    assert len(replay.requests_to(EVENTS_PATH)) == 2
    output = capfd.readouterr()
    assert API_KEY not in output.err + output.out


async def test_429_with_a_long_reset_ends_the_poll_with_one_request(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis, clock: ContractClock
) -> None:
    replay.route(EVENTS_PATH, Reply(429, {"errors": ["Rate limit reached"]},
                                    headers={"X-RateLimit-Reset": "1800"}))

    with pytest.raises(RateLimitedError) as caught:
        await datadog.poll()

    assert caught.value.retry_after_s == 1800
    assert len(replay.requests_to(EVENTS_PATH)) == 1 and clock.sleeps == []
    assert await redis.xlen("raw-input-signals") == 0


async def test_a_body_without_data_is_malformed_and_one_bad_event_is_isolated(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(EVENTS_PATH, Reply(body={"meta": {"page": {}}}))
    with pytest.raises(MalformedResponseError, match="'data' list, got an object with keys meta"):
        await datadog.poll()

    no_attributes = {"id": "AAAAbroken", "type": "event"}
    replay.route(EVENTS_PATH, events_page([event(1), no_attributes, event(3)]))
    summary = await datadog.poll()

    assert (summary.published, summary.failed) == (2, 1)
    assert await published_ids(redis) == [event_key(1), event_key(3)]


@pytest.mark.parametrize(("provider", "expected"), [
    ({"apiKey": None}, "DATADOG connector dd-events: apiKey is required"),
    ({"appKey": ""}, "DATADOG connector dd-events: appKey is required"),
    ({"site": "https://datadoghq.eu"}, "providerConfig.site: String should match pattern"),
    ({"pageLimit": 5000}, "providerConfig.pageLimit: Input should be less than or equal to 1000"),
    ({"apiKeys": "x"}, "providerConfig.apiKeys: unknown field"),
])
async def test_config_errors_name_the_connector_and_the_field(
    redis: Redis, replay: ReplayServer, clock: ContractClock, lease: Lease,
    provider: dict[str, Any], expected: str,
) -> None:
    config = dd_config(replay)
    settings = {k: v for k, v in {**config.provider_config, **provider}.items() if v is not None}

    with pytest.raises(ConfigError) as caught:
        await build(redis, lease, clock, config.model_copy(update={"provider_config": settings}))

    assert expected in str(caught.value)
    assert str(caught.value).startswith("DATADOG connector dd-events: ")
    assert API_KEY not in str(caught.value) and APP_KEY not in str(caught.value)


def test_site_chooses_the_api_host_and_base_url_overrides_it() -> None:
    keys = {"apiKey": "a", "appKey": "b"}
    assert DatadogConfig.model_validate(keys).api_url == "https://api.datadoghq.com"
    eu = DatadogConfig.model_validate({**keys, "site": "datadoghq.eu"})
    assert eu.api_url == "https://api.datadoghq.eu"
    us5 = DatadogConfig.model_validate({**keys, "site": "us5.datadoghq.com"})
    assert us5.api_url == "https://api.us5.datadoghq.com"
    proxied = DatadogConfig.model_validate({**keys, "baseUrl": "http://dd-proxy:8080/"})
    assert proxied.api_url == "http://dd-proxy:8080"
    assert API_KEY not in repr(DatadogConfig.model_validate({"apiKey": API_KEY, "appKey": "b"}))


def test_events_timestamps_are_parsed_with_their_zone() -> None:
    from providers.datadog.schema import event_timestamp

    assert event_timestamp(event(1)) == datetime.fromisoformat("2027-01-15T07:00:01+00:00")
    with pytest.raises(ValueError, match="no time zone"):
        event_timestamp({"attributes": {"timestamp": "2027-01-15T07:00:01"}})


async def test_a_cursor_ahead_of_the_clock_never_makes_an_empty_window(
    datadog: PollingConnector, replay: ReplayServer, redis: Redis, clock: ContractClock
) -> None:
    replay.route(EVENTS_PATH, events_page([event(1)]))
    await datadog.poll()
    clock.now_s -= 600  # this host's clock is behind the one that saved the cursor

    await datadog.poll()

    second = replay.requests_to(EVENTS_PATH)[1].query
    assert (second["filter[from]"], second["filter[to]"]) == (
        "2027-01-15T07:48:00.000Z", "2027-01-15T07:50:00.000Z")
