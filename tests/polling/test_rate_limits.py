"""framework.polling.rate_limits: rate-limit answers of a real local HTTP server,
rewritten into a 429 with Retry-After, and the HttpClient's reading of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from framework.core.errors import PermanentSourceError, RateLimitedError
from framework.core.logs import get_logger
from framework.polling import HttpClient, RateLimitRules, RateLimitTransport
from framework.polling.config import ConnectorConfig, RetryConfig
from framework.testing import ReplayServer, Reply
from tests.helpers import ManualClock

PATH = "/v1/things"
NOW_S = 1_800_000_000.0
EPOCH_RESET = RateLimitRules(
    name="Epoch", statuses=frozenset({403, 429}), reset_header="x-ratelimit-reset",
    reset_is_epoch=True, remaining_header="x-ratelimit-remaining",
    body_markers=(b"secondary rate limit",), fallback_wait_s=60,
)
SECONDS_RESET = RateLimitRules(name="Seconds", reset_header="X-RateLimit-Reset")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now_s=NOW_S)


def client(rules: RateLimitRules, clock: ManualClock) -> httpx.AsyncClient:
    transport = RateLimitTransport(httpx.AsyncHTTPTransport(), rules, clock=clock)
    return httpx.AsyncClient(transport=transport)


async def answer(replay: ReplayServer, rules: RateLimitRules, clock: ManualClock,
                 reply: Reply) -> httpx.Response:
    replay.route(PATH, reply)
    async with client(rules, clock) as http:
        return await http.get(replay.url + PATH)


async def test_an_exhausted_limit_becomes_a_429_waiting_until_the_epoch_reset(
    replay: ReplayServer, clock: ManualClock
) -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW_S) + 90)}
    response = await answer(replay, EPOCH_RESET, clock,
                            Reply(403, body={"message": "API rate limit exceeded"},
                                  headers=headers))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "90"
    assert response.reason_phrase == "Too Many Requests (Epoch rate limit)"
    assert response.json() == {"message": "API rate limit exceeded"}


async def test_a_reset_already_past_waits_one_second(
    replay: ReplayServer, clock: ManualClock
) -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW_S) - 5)}
    response = await answer(replay, EPOCH_RESET, clock, Reply(403, headers=headers))

    assert response.headers["Retry-After"] == "1"


async def test_an_exhausted_limit_without_reset_and_a_message_only_limit_wait_the_fallback(
    replay: ReplayServer, clock: ManualClock
) -> None:
    no_reset = await answer(replay, EPOCH_RESET, clock,
                            Reply(403, headers={"x-ratelimit-remaining": "0"}))
    message = await answer(replay, EPOCH_RESET, clock,
                           Reply(403, body={"message": "You have exceeded a Secondary Rate "
                                                       "Limit"}))

    assert (no_reset.status_code, no_reset.headers["Retry-After"]) == (429, "60")
    assert (message.status_code, message.headers["Retry-After"]) == (429, "60")


async def test_a_403_that_is_no_rate_limit_passes_unchanged(
    replay: ReplayServer, clock: ManualClock
) -> None:
    response = await answer(replay, EPOCH_RESET, clock,
                            Reply(403, body={"message": "Resource not accessible"},
                                  headers={"x-ratelimit-remaining": "4999"}))

    assert response.status_code == 403
    assert "Retry-After" not in response.headers
    assert response.json() == {"message": "Resource not accessible"}


async def test_a_reset_in_seconds_becomes_the_retry_after_of_a_429(
    replay: ReplayServer, clock: ManualClock
) -> None:
    response = await answer(replay, SECONDS_RESET, clock,
                            Reply(429, headers={"X-RateLimit-Remaining": "0",
                                                "X-RateLimit-Reset": "3"}))

    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert response.reason_phrase == "Too Many Requests"


async def test_an_own_retry_after_and_other_statuses_are_left_alone(
    replay: ReplayServer, clock: ManualClock
) -> None:
    own = await answer(replay, SECONDS_RESET, clock,
                       Reply(429, headers={"Retry-After": "7", "X-RateLimit-Reset": "3"}))
    server_error = await answer(replay, SECONDS_RESET, clock,
                                Reply(503, headers={"X-RateLimit-Reset": "3"}))

    assert own.headers["Retry-After"] == "7"
    assert server_error.status_code == 503 and "Retry-After" not in server_error.headers


@pytest.fixture
async def http(clock: ManualClock) -> AsyncIterator[HttpClient]:
    config = ConnectorConfig(name="limited", type="TEST", max_retries=2,
                             retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=30_000,
                                                      jitter_ratio=0.0))
    transport = RateLimitTransport(httpx.AsyncHTTPTransport(), EPOCH_RESET, clock=clock)
    client = HttpClient(config, clock=clock, logger=get_logger(connector="limited"),
                        transport=transport)
    yield client
    await client.aclose()


async def test_the_client_waits_a_short_limit_out_and_then_reads_the_page(
    http: HttpClient, replay: ReplayServer, clock: ManualClock
) -> None:
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW_S) + 20)}
    replay.route(PATH, Reply(403, headers=reset), Reply(body=[1, 2]))

    response = await http.get(replay.url + PATH)

    assert response.json() == [1, 2]
    assert clock.sleeps == [20]


async def test_a_limit_longer_than_the_longest_retry_delay_ends_the_poll(
    http: HttpClient, replay: ReplayServer
) -> None:
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW_S) + 3600)}
    replay.route(PATH, Reply(403, headers=reset))

    with pytest.raises(RateLimitedError) as caught:
        await http.get(replay.url + PATH)

    assert caught.value.retry_after_s == 3600
    assert len(replay.requests_to(PATH)) == 1


async def test_a_403_that_is_no_rate_limit_stays_permanent(
    http: HttpClient, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(403, body={"message": "Bad credentials"}))

    with pytest.raises(PermanentSourceError, match="403 Forbidden.*Bad credentials"):
        await http.get(replay.url + PATH)
