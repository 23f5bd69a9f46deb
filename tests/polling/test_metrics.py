"""metrics:connector:{name} in the seed's structure, and is_healthy."""

from __future__ import annotations

from redis.asyncio import Redis

from framework.polling.metrics import MetricsRecorder, get_metrics, is_healthy
from framework.polling.poller import PollSummary

T0 = 1_800_000_000.0


async def test_polls_are_counted_in_the_seed_structure(redis: Redis) -> None:
    recorder = MetricsRecorder(redis, "weather-noaa")
    await recorder.record_poll(at_s=T0, latency_ms=100, summary=PollSummary(fetched=5, published=3))
    await recorder.record_poll(at_s=T0 + 60, latency_ms=301, summary=None)

    metrics = await get_metrics(redis, "weather-noaa")

    assert metrics == {
        "connectorName": "weather-noaa",
        "lastPollTime": "2027-01-15T08:01:00.000Z",
        "lastSuccessTime": "2027-01-15T08:00:00.000Z",
        "totalPolls": 2,
        "successfulPolls": 1,
        "failedPolls": 1,
        "itemsFetched": 5,
        "itemsPublished": 3,
        "itemsFailed": 0,
        "lastPollItemsFailed": 0,
        "degradedSince": None,
        "averageLatencyMs": 201,
    }


async def test_degraded_since_the_first_poll_whose_every_item_failed(redis: Redis) -> None:
    recorder = MetricsRecorder(redis, "weather-noaa")
    all_failed = PollSummary(fetched=3, failed=3)
    await recorder.record_poll(at_s=T0, latency_ms=1, summary=all_failed)
    await recorder.record_poll(at_s=T0 + 60, latency_ms=1, summary=all_failed)
    await recorder.record_poll(at_s=T0 + 120, latency_ms=1, summary=None)  # cannot tell
    await recorder.record_poll(at_s=T0 + 180, latency_ms=1,
                               summary=PollSummary(not_modified=True))  # cannot tell
    metrics = await get_metrics(redis, "weather-noaa")
    assert metrics is not None
    assert metrics["degradedSince"] == "2027-01-15T08:00:00.000Z"
    assert metrics["itemsFailed"] == 6 and metrics["lastPollItemsFailed"] == 3

    await recorder.record_poll(at_s=T0 + 240, latency_ms=1,
                               summary=PollSummary(fetched=3, failed=2, published=1))
    metrics = await get_metrics(redis, "weather-noaa")
    assert metrics is not None
    assert metrics["degradedSince"] is None and metrics["lastPollItemsFailed"] == 2


async def test_health_is_the_age_of_the_last_success(redis: Redis) -> None:
    assert not await is_healthy(redis, "weather-noaa", 300, now_s=T0)
    await MetricsRecorder(redis, "weather-noaa").record_poll(
        at_s=T0, latency_ms=10, summary=PollSummary())

    assert await is_healthy(redis, "weather-noaa", 300, now_s=T0 + 299)
    assert not await is_healthy(redis, "weather-noaa", 300, now_s=T0 + 301)
