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
        "averageLatencyMs": 201,
    }


async def test_health_is_the_age_of_the_last_success(redis: Redis) -> None:
    assert not await is_healthy(redis, "weather-noaa", 300, now_s=T0)
    await MetricsRecorder(redis, "weather-noaa").record_poll(
        at_s=T0, latency_ms=10, summary=PollSummary())

    assert await is_healthy(redis, "weather-noaa", 300, now_s=T0 + 299)
    assert not await is_healthy(redis, "weather-noaa", 300, now_s=T0 + 301)
