"""The NOAA_WEATHER connector against a local server replaying api.weather.gov shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core.clock import SystemClock
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
from framework.polling.poller import PollingConnector, PollSummary
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import ReplayServer, Reply
from providers.noaa import NoaaAlert, create_noaa_weather_connector
from tests.conftest import FIXTURES as ALL_FIXTURES
from tests.helpers import stream_items
from tests.noaa_feed import alert_feature, collection

PATH = "/alerts/active"
FIXTURES = ALL_FIXTURES / "noaa"
PROBLEM = {"correlationId": "3f1a", "title": "Unexpected Problem", "type":
           "https://api.weather.gov/problems/UnexpectedProblem", "status": 500,
           "detail": "An unexpected problem has occurred.", "instance":
           "https://api.weather.gov/requests/3f1a"}


class InstantClock(SystemClock):
    """Real time, but retry sleeps are recorded instead of waited."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def clock() -> InstantClock:
    return InstantClock()


@pytest.fixture
async def noaa(
    redis: Redis, replay: ReplayServer, clock: InstantClock
) -> AsyncIterator[PollingConnector]:
    config = ConnectorConfig(
        name="weather-noaa", type="NOAA_WEATHER", max_retries=2,
        retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=5000, jitter_ratio=0.0),
        provider_config={"baseUrl": replay.url, "area": "CA,OR", "severity": "Severe,Extreme",
                         "userAgent": "connector-fleet-tests (ops@example.com)"},
    )
    lease = Lease(redis, config.name, ttl_s=30)
    assert await lease.try_acquire()
    context = ConnectorContext(
        store=StateStore(redis, config, lease, clock=clock), clock=clock,
        logger=get_logger(connector=config.name),
    )
    connector = create_noaa_weather_connector(config, context)
    yield connector
    await connector.aclose()


def geojson(features: list[dict[str, Any]], **kwargs: Any) -> Reply:
    return Reply(body=collection(features), content_type="application/geo+json", **kwargs)


async def test_active_alerts_are_published_as_normalized_signals(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, geojson([alert_feature(1), alert_feature(2)]))

    summary = await noaa.poll()

    assert summary == PollSummary(fetched=2, published=2)
    (request,) = replay.requests_to(PATH)
    assert request.query == {"area": "CA,OR", "severity": "Severe,Extreme"}
    assert request.headers["user-agent"] == "connector-fleet-tests (ops@example.com)"
    assert request.headers["accept"] == "application/geo+json"
    entries = await stream_items(redis)
    assert entries[0]["item_id"] == alert_feature(1)["id"]
    alert = NoaaAlert.model_validate(orjson.loads(entries[0]["payload"]))
    properties = alert_feature(1)["properties"]
    assert alert.id == properties["id"] and alert.url == alert_feature(1)["id"]
    assert (alert.event, alert.severity, alert.urgency, alert.certainty) == (
        properties["event"], "Severe", "Expected", "Likely")
    assert alert.sent == properties["sent"] and alert.headline == properties["headline"]
    assert alert.instruction is None and alert.hasGeometry is False


async def test_etag_is_sent_back_and_304_fetches_nothing(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, geojson([alert_feature(1)], etag='"abc123"',
                               headers={"Last-Modified": "Fri, 20 Nov 2026 22:00:00 GMT"}))
    await noaa.poll()

    summary = await noaa.poll()

    assert summary == PollSummary(not_modified=True)
    second = replay.requests_to(PATH)[1]
    assert second.headers["if-none-match"] == '"abc123"'
    assert second.headers["if-modified-since"] == "Fri, 20 Nov 2026 22:00:00 GMT"
    assert await redis.hget("connector:state:weather-noaa", "etag") == '"abc123"'
    assert await redis.xlen("raw-input-signals") == 1


async def test_updated_new_and_expired_alerts(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, geojson([alert_feature(1), alert_feature(2), alert_feature(3)]),
                 geojson([alert_feature(1), alert_feature(2, revision=1), alert_feature(4)]))
    await noaa.poll()

    summary = await noaa.poll()

    assert summary == PollSummary(fetched=3, published=2, skipped_unchanged=1, removed=1)
    published = [e["item_id"] for e in await stream_items(redis)][3:]
    assert published == [alert_feature(2)["id"], alert_feature(4)["id"]]
    assert sorted(await redis.hkeys("connector:state:weather-noaa:versions")) == sorted(
        alert_feature(n)["id"] for n in (1, 2, 4))


async def test_missing_fields_are_null_and_a_malformed_feature_is_isolated(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    sparse = alert_feature(7)
    for field in ("headline", "onset", "ends", "instruction", "affectedZones"):
        sparse["properties"].pop(field)
    no_id = alert_feature(8)
    no_id.pop("id")
    no_id["properties"].pop("id")
    no_properties = {"id": "https://api.weather.gov/alerts/urn:x", "type": "Feature"}
    replay.route(PATH, geojson([alert_feature(6), sparse, no_id, no_properties]))

    summary = await noaa.poll()

    assert summary == PollSummary(fetched=4, published=2, failed=2)
    alert = NoaaAlert.model_validate(orjson.loads((await stream_items(redis))[1]["payload"]))
    assert alert.headline is None and alert.onset is None and alert.affectedZones == []


async def test_429_with_retry_after_is_honoured_then_succeeds(
    noaa: PollingConnector, replay: ReplayServer, clock: InstantClock
) -> None:
    replay.route(PATH, Reply(429, PROBLEM | {"status": 429}, headers={"Retry-After": "3"}),
                 geojson([alert_feature(1)]))

    summary = await noaa.poll()

    assert summary.published == 1
    assert clock.sleeps == [3.0]


async def test_long_retry_after_ends_the_poll_with_rate_limited(
    noaa: PollingConnector, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(429, PROBLEM | {"status": 429}, headers={"Retry-After": "120"}))

    with pytest.raises(RateLimitedError) as caught:
        await noaa.poll()

    assert caught.value.retry_after_s == 120 and len(replay.requests_to(PATH)) == 1


async def test_500_is_retried_and_reported_without_touching_state(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis, clock: InstantClock
) -> None:
    replay.route(PATH, Reply(500, PROBLEM, content_type="application/problem+json"))

    with pytest.raises(TransientSourceError, match="500 Internal Server Error.*Unexpected"):
        await noaa.poll()

    assert len(replay.requests_to(PATH)) == 3 and clock.sleeps == [0.1, 0.2]
    assert not await redis.exists("connector:state:weather-noaa")


async def test_malformed_json_is_a_clear_error_and_nothing_is_published(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, Reply(body=b'{"type": "FeatureCollection", "features": [',
                             content_type="application/geo+json"))

    with pytest.raises(MalformedResponseError, match="not valid JSON"):
        await noaa.poll()
    assert await redis.xlen("raw-input-signals") == 0

    replay.route(PATH, Reply(body={"type": "FeatureCollection", "features": None}))
    with pytest.raises(MalformedResponseError, match="'features' list"):
        await noaa.poll()


async def test_invalid_provider_config_names_the_connector_and_field(
    redis: Redis, clock: InstantClock
) -> None:
    config = ConnectorConfig(name="weather-noaa", type="NOAA_WEATHER",
                             provider_config={"alertsPath": "alerts", "colour": "red"})
    lease = Lease(redis, config.name, ttl_s=30)
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                               clock=clock, logger=get_logger())

    with pytest.raises(ConfigError) as caught:
        create_noaa_weather_connector(config, context)

    message = str(caught.value)
    assert message.startswith("NOAA_WEATHER connector weather-noaa: ")
    assert "baseUrl is required" in message
    assert "providerConfig.alertsPath" in message
    assert "providerConfig.colour: unknown field" in message


# -- recorded response shapes (tests/fixtures/noaa, see its README) ----------------------

def recorded(name: str, **kwargs: Any) -> Reply:
    return Reply.from_file(FIXTURES / name, content_type="application/geo+json", **kwargs)


LAST_MODIFIED = {"Last-Modified": "Fri, 20 Nov 2026 22:09:41 GMT",
                 "Cache-Control": "public, max-age=30, s-maxage=30"}


async def test_recorded_collection_then_not_modified_by_last_modified(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, recorded("alerts_active.json", headers=LAST_MODIFIED),
                 Reply(304, headers=LAST_MODIFIED))

    first = await noaa.poll()
    second = await noaa.poll()

    assert first == PollSummary(fetched=5, published=5)
    assert second == PollSummary(not_modified=True)
    assert replay.requests_to(PATH)[1].headers["if-modified-since"] == LAST_MODIFIED[
        "Last-Modified"]
    assert "if-none-match" not in replay.requests_to(PATH)[1].headers  # NOAA sends no ETag
    for entry in await stream_items(redis):
        NoaaAlert.model_validate(orjson.loads(entry["payload"]))


async def test_recorded_update_removal_and_addition(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, recorded("alerts_active.json"), recorded("alerts_active_updated.json"))
    await noaa.poll()

    summary = await noaa.poll()

    assert summary == PollSummary(fetched=5, published=2, skipped_unchanged=3, removed=1)
    events = [NoaaAlert.model_validate(orjson.loads(e["payload"]))
              for e in (await stream_items(redis))[5:]]
    assert sorted((a.event, a.messageType) for a in events) == [
        ("High Wind Warning", "Update"), ("Tornado Warning", "Alert")]
    update = next(a for a in events if a.messageType == "Update")
    assert len(update.references) == 1 and update.references[0].startswith("urn:oid:")


async def test_recorded_missing_fields(
    noaa: PollingConnector, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, recorded("alerts_missing_fields.json"))

    summary = await noaa.poll()

    assert summary == PollSummary(fetched=3, published=2, failed=1)
    sparse = NoaaAlert.model_validate(orjson.loads((await stream_items(redis))[1]["payload"]))
    assert sparse.headline is None and sparse.onset is None and sparse.instruction is None


async def test_recorded_problem_json_500_is_reported_with_its_title(
    noaa: PollingConnector, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply.from_file(FIXTURES / "error_500.json", status=500,
                                       content_type="application/problem+json"))

    with pytest.raises(TransientSourceError, match="Unexpected Problem"):
        await noaa.poll()


async def test_cdn_403_html_without_user_agent_is_permanent(
    noaa: PollingConnector, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(403, "<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD></HTML>",
                             content_type="text/html"))

    with pytest.raises(PermanentSourceError, match="403 Forbidden: <HTML><HEAD><TITLE>Access"):
        await noaa.poll()
    assert len(replay.requests_to(PATH)) == 1
