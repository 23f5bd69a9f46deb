"""The GITHUB connector against a local server replaying the REST API's issue listings."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from framework.core.errors import (
    ConfigError,
    LeaseLostError,
    MalformedResponseError,
    PermanentSourceError,
    RateLimitedError,
    TransientSourceError,
)
from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig, RetryConfig, parse_provider_config
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector, PollSummary
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import RedisServer, ReplayServer, Reply
from providers.github import RATE_LIMITS, GitHubConfig, GitHubIssue, create_github_connector
from tests.conftest import FIXTURES as ALL_FIXTURES
from tests.helpers import ManualClock, stream_items
from tests.process import ConnectorProcess, write_config

REPO = "octo-org/api"
PATH = f"/repos/{REPO}/issues"
NEXT_PATH = "/repositories/4711/issues"
FIXTURES = ALL_FIXTURES / "github"
STATE = "connector:state:gh-api"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now_s=1_795_000_000.0)


Factory = Callable[..., PollingConnector]


@pytest.fixture
async def make_github(
    redis: Redis, replay: ReplayServer, clock: ManualClock
) -> AsyncIterator[Factory]:
    built: list[PollingConnector] = []
    lease = Lease(redis, "gh-api", ttl_s=30)
    assert await lease.try_acquire()

    def make(**provider: Any) -> PollingConnector:
        config = ConnectorConfig(
            name="gh-api", type="GITHUB", max_retries=2,
            retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=5000, jitter_ratio=0.0),
            provider_config={"baseUrl": replay.url, "repositories": [REPO],
                             "token": "ghp_s3cr3t", "perPage": 2,
                             "userAgent": "connector-fleet-tests"} | provider,
        )
        context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                                   clock=clock, logger=get_logger(connector=config.name))
        connector = create_github_connector(config, context)
        built.append(connector)
        return connector

    yield make
    for connector in built:
        await connector.aclose()


def recorded(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = orjson.loads((FIXTURES / name).read_bytes())
    return items


PAGE1, PAGE2 = recorded("issues_page1.json"), recorded("issues_page2.json")
ISSUE, PULL, CLOSED = PAGE1[0], PAGE1[1], PAGE2[0]


def listing(items: list[dict[str, Any]], *, next_url: str | None = None,
            etag: str | None = None, **kwargs: Any) -> Reply:
    headers = dict(kwargs.pop("headers", {}))
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next", <{next_url}>; rel="last"'
    return Reply(body=items, etag=etag, headers=headers, **kwargs)


def edited(item: dict[str, Any], updated_at: str, **fields: Any) -> dict[str, Any]:
    return copy.deepcopy(item) | {"updated_at": updated_at, **fields}


async def published(redis: Redis) -> list[GitHubIssue]:
    return [GitHubIssue.model_validate(orjson.loads(e["payload"]))
            for e in await stream_items(redis)]


async def cursors(redis: Redis) -> dict[str, str]:
    saved: dict[str, str] = orjson.loads(await redis.hget(STATE, "cursors") or "{}")
    return saved


def limit_headers(remaining: int, reset_s: float) -> dict[str, str]:
    return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(5000 - remaining), "x-ratelimit-reset": str(int(reset_s)),
            "x-ratelimit-resource": "core"}


async def test_recorded_pages_are_followed_and_published(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    next_url = f"{replay.url}{NEXT_PATH}?state=all&sort=updated&direction=desc&per_page=2&page=2"
    replay.route(PATH, listing(PAGE1, next_url=next_url, etag='W/"p1-v1"'))
    replay.route(NEXT_PATH, listing(PAGE2))

    summary = await make_github().poll()

    assert summary == PollSummary(fetched=3, published=3)
    (first,) = replay.requests_to(PATH)
    assert first.query == {"state": "all", "sort": "updated", "direction": "desc",
                           "per_page": "2"}
    assert first.headers["authorization"] == "Bearer ghp_s3cr3t"
    assert first.headers["accept"] == "application/vnd.github+json"
    assert first.headers["x-github-api-version"] == "2022-11-28"
    assert first.headers["user-agent"] == "connector-fleet-tests"
    assert replay.requests_to(NEXT_PATH)[0].query["page"] == "2"
    issue, pull, closed = await published(redis)
    assert (issue.id, issue.kind, issue.number, issue.state) == (
        "octo-org/api#1347", "issue", 1347, "open")
    assert issue.labels == ["bug", "priority: high"] and issue.assignees == ["octocat"]
    assert (issue.milestone, issue.comments, issue.author) == ("v2.4", 4, "mona")
    assert issue.url == "https://github.com/octo-org/api/issues/1347" and issue.draft is None
    assert (pull.kind, pull.draft, pull.mergedAt) == ("pull_request", False, None)
    assert (closed.state, closed.stateReason, closed.closedAt, closed.body) == (
        "closed", "completed", "2026-11-18T11:20:05Z", None)
    assert await cursors(redis) == {f"since:{REPO}": ISSUE["updated_at"],
                                    f"etag:{REPO}": 'W/"p1-v1"'}


async def test_next_poll_asks_since_the_cursor_and_a_304_publishes_nothing(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    github = make_github(perPage=100)
    replay.route(PATH, listing([ISSUE, CLOSED], etag='W/"v1"'))
    await github.poll()

    summary = await github.poll()

    assert summary == PollSummary(not_modified=True)
    second = replay.requests_to(PATH)[1]
    # The cursor is 16:02:11; the default overlap of 60 s covers GitHub's replication lag.
    assert second.query["since"] == "2026-11-20T16:01:11Z"
    assert second.headers["if-none-match"] == 'W/"v1"'
    assert await redis.xlen("raw-input-signals") == 2


async def test_an_updated_item_is_republished_and_the_overlap_skipped(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    github = make_github(perPage=100, overlapSeconds=0)
    replay.route(PATH, listing([ISSUE, CLOSED]),
                 listing([edited(CLOSED, "2026-11-21T08:00:00Z", state="open",
                                 state_reason="reopened"), ISSUE]))
    await github.poll()

    summary = await github.poll()

    assert summary == PollSummary(fetched=2, published=1, skipped_unchanged=1)
    assert replay.requests_to(PATH)[1].query["since"] == ISSUE["updated_at"]
    reopened = (await published(redis))[2]
    assert (reopened.number, reopened.state, reopened.stateReason) == (1290, "open", "reopened")
    assert (await cursors(redis))[f"since:{REPO}"] == "2026-11-21T08:00:00Z"


async def test_the_cursor_never_moves_back_when_the_newest_item_disappears(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    github = make_github(perPage=100)
    replay.route(PATH, listing([ISSUE, PULL]), listing([PULL]))  # #1347 deleted
    await github.poll()

    await github.poll()

    assert (await cursors(redis))[f"since:{REPO}"] == ISSUE["updated_at"]


async def test_pull_requests_can_be_left_out_without_holding_the_cursor_back(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    newest_pull = edited(PULL, "2026-11-20T17:00:00Z")
    replay.route(PATH, listing([newest_pull, ISSUE, CLOSED]))

    summary = await make_github(includePullRequests=False, perPage=100).poll()

    assert summary == PollSummary(fetched=2, published=2)
    assert [i.kind for i in await published(redis)] == ["issue", "issue"]
    assert (await cursors(redis))[f"since:{REPO}"] == "2026-11-20T17:00:00Z"


async def test_an_item_repeated_on_the_next_page_is_published_once(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    # Newest first: the item updated while we paged is repeated, none is skipped.
    replay.route(PATH, listing([ISSUE, PULL], next_url=f"{replay.url}{NEXT_PATH}?page=2"))
    replay.route(NEXT_PATH, listing([edited(PULL, "2026-11-20T15:40:00Z"), CLOSED]))

    summary = await make_github().poll()

    assert summary == PollSummary(fetched=3, published=3)
    assert [i.number for i in await published(redis)] == [1347, 1349, 1290]


async def test_malformed_items_are_isolated(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    no_number = copy.deepcopy(CLOSED)
    no_number.pop("number")
    bad_labels = edited(PULL, PULL["updated_at"], labels="bug")
    no_title = edited(CLOSED, CLOSED["updated_at"], number=1291, title=None)
    replay.route(PATH, listing([ISSUE, no_number, bad_labels, no_title, "oops"]))

    summary = await make_github(perPage=100).poll()

    assert summary == PollSummary(fetched=5, published=1, failed=4)
    assert [i.number for i in await published(redis)] == [1347]


async def test_a_failing_repository_does_not_stop_the_others(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route("/repos/octo-org/gone/issues",
                 Reply(404, body=(FIXTURES / "error_404.json").read_bytes()))
    replay.route(PATH, listing([ISSUE]))
    github = make_github(repositories=["octo-org/gone", REPO])

    summary = await github.poll()

    assert summary == PollSummary(fetched=1, published=1)
    assert list(await cursors(redis)) == [f"since:{REPO}"]


async def test_when_every_repository_fails_the_poll_fails(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, Reply(404, body=(FIXTURES / "error_404.json").read_bytes()))

    with pytest.raises(PermanentSourceError, match="404 Not Found.*list-repository-issues"):
        await make_github().poll()

    assert not await redis.exists(STATE)


async def test_primary_rate_limit_403_ends_the_poll_until_the_reset(
    make_github: Factory, replay: ReplayServer, redis: Redis, clock: ManualClock
) -> None:
    replay.route(PATH, Reply(403, body=(FIXTURES / "rate_limit_403.json").read_bytes(),
                             headers=limit_headers(0, clock.now_s + 1800)))
    replay.route("/repos/octo-org/web/issues", listing([ISSUE]))

    with pytest.raises(RateLimitedError, match="API rate limit exceeded") as caught:
        await make_github(repositories=[REPO, "octo-org/web"]).poll()

    assert caught.value.retry_after_s == 1800
    assert len(replay.requests) == 1 and not await redis.exists(STATE)


async def test_secondary_rate_limit_waits_its_retry_after_then_succeeds(
    make_github: Factory, replay: ReplayServer, clock: ManualClock
) -> None:
    replay.route(PATH, Reply(403, body=(FIXTURES / "secondary_limit_403.json").read_bytes(),
                             headers={"retry-after": "3"}),
                 listing([ISSUE]))

    summary = await make_github().poll()

    assert summary.published == 1 and clock.sleeps == [3.0]


async def test_secondary_rate_limit_without_retry_after_waits_a_minute(
    make_github: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(403, body=(FIXTURES / "secondary_limit_403.json").read_bytes()))

    with pytest.raises(RateLimitedError, match="secondary rate limit") as caught:
        await make_github().poll()

    assert caught.value.retry_after_s == 60


async def test_a_403_that_is_not_a_rate_limit_is_permanent(
    make_github: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(403, body=(FIXTURES / "forbidden_403.json").read_bytes(),
                             headers=limit_headers(4999, 0)))

    with pytest.raises(PermanentSourceError, match="403 Forbidden.*not accessible") as caught:
        await make_github().poll()

    assert len(replay.requests) == 1 and "ghp_s3cr3t" not in str(caught.value)


async def test_a_body_that_is_not_a_list_is_malformed(
    make_github: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body={"message": "Moved Permanently", "url": "x"}))

    with pytest.raises(MalformedResponseError, match="JSON list.*message: Moved Permanently"):
        await make_github().poll()


async def test_a_link_loop_stops_the_poll(make_github: Factory, replay: ReplayServer) -> None:
    loop = listing([ISSUE], next_url=f"{replay.url}{NEXT_PATH}?page=2")
    replay.route(PATH, loop)
    replay.route(NEXT_PATH, loop)

    with pytest.raises(MalformedResponseError, match="already read"):
        await make_github().poll()


async def test_initial_since_bounds_the_first_poll(
    make_github: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, listing([]))

    await make_github(initialSince="2026-11-01T00:00:00+01:00", overlapSeconds=0,
                      labels="bug,security", state="open").poll()

    query = replay.requests_to(PATH)[0].query
    assert (query["since"], query["labels"], query["state"]) == (
        "2026-10-31T23:00:00Z", "bug,security", "open")


async def test_a_restarted_connector_resumes_from_the_saved_cursor(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, listing([ISSUE, CLOSED]))
    await make_github(perPage=100).poll()
    replay.route(PATH, listing([edited(CLOSED, "2026-11-21T08:00:00Z"), ISSUE]))

    summary = await make_github(perPage=100).poll()  # a new instance, as after a crash

    assert summary == PollSummary(fetched=2, published=1, skipped_unchanged=1)
    assert replay.requests_to(PATH)[1].query["since"] == "2026-11-20T16:01:11Z"


async def test_a_poll_failing_on_page_two_publishes_nothing_and_keeps_the_cursor(
    make_github: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, listing([ISSUE, PULL], next_url=f"{replay.url}{NEXT_PATH}?page=2"))
    replay.route(NEXT_PATH, Reply(502, body="Bad Gateway", content_type="text/plain"))

    with pytest.raises(TransientSourceError, match="502"):
        await make_github().poll()

    assert await redis.xlen("raw-input-signals") == 0 and not await redis.exists(STATE)


class LostAfterFirstChunk:
    """A fence that holds the lease for one commit chunk, as if the process then died."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease
        self.reads = 0

    @property
    def token(self) -> str:
        self.reads += 1
        return self._lease.token if self.reads == 1 else "another-instance"


async def test_a_crash_between_commit_chunks_neither_loses_nor_repeats_an_item(
    redis: Redis, replay: ReplayServer, clock: ManualClock
) -> None:
    lease = Lease(redis, "gh-api", ttl_s=30)
    assert await lease.try_acquire()
    config = ConnectorConfig(name="gh-api", type="GITHUB", provider_config={
        "baseUrl": replay.url, "repositories": [REPO]})
    replay.route(PATH, listing([ISSUE, PULL, CLOSED]))

    async def poll(fence: Lease | LostAfterFirstChunk) -> PollSummary:
        store = StateStore(redis, config, fence, clock=clock, chunk_items=1)
        connector = create_github_connector(config, ConnectorContext(
            store=store, clock=clock, logger=get_logger(connector="gh-api")))
        try:
            return await connector.poll()
        finally:
            await connector.aclose()

    with pytest.raises(LeaseLostError):
        await poll(LostAfterFirstChunk(lease))
    assert [e["item_id"] for e in await stream_items(redis)] == [f"{REPO}#1347"]
    assert await cursors(redis) == {}  # saved with the last chunk only

    summary = await poll(lease)  # the restarted instance

    assert summary == PollSummary(fetched=3, published=2, skipped_unchanged=1)
    assert [e["item_id"] for e in await stream_items(redis)] == [
        f"{REPO}#1347", f"{REPO}#1349", f"{REPO}#1290"]
    assert (await cursors(redis))[f"since:{REPO}"] == ISSUE["updated_at"]


async def test_without_a_token_no_authorization_is_sent(
    make_github: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, listing([]))

    await make_github(token="").poll()  # an unset ${GITHUB_TOKEN:-}

    assert "authorization" not in replay.requests[0].headers


async def test_requests_go_through_the_environment_proxy(
    make_github: Factory, replay: ReplayServer, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, replay.url)  # the replay server plays the proxy
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    replay.route(PATH, listing([ISSUE]))

    summary = await make_github(baseUrl="http://github.invalid").poll()

    assert summary.published == 1
    assert replay.requests_to(PATH)[0].headers["host"] == "github.invalid"


def test_rate_limit_wait_from_headers_and_message() -> None:
    headers = httpx.Headers(limit_headers(0, 1000))
    assert RATE_LIMITS.wait_s(headers, b"", now_s=400.2) == 600
    assert RATE_LIMITS.wait_s(headers, b"", now_s=2000) == 1  # reset already passed
    assert RATE_LIMITS.wait_s(httpx.Headers({"Retry-After": "7"}), b"", 0) == 7
    assert RATE_LIMITS.wait_s(httpx.Headers(), b'{"message": "Bad credentials"}', 0) is None


# -- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "problems"), [
    ({}, ["repositories is required"]),
    ({"repositories": []}, ["providerConfig.repositories: List should have at least 1"]),
    ({"repositories": ["octo-org"], "perPage": 101},
     ["providerConfig.repositories.0: String should match", "providerConfig.perPage"]),
    ({"repositories": [REPO], "state": "merged", "owner": "x"},
     ["providerConfig.state", "providerConfig.owner: unknown field"]),
])
async def test_invalid_provider_config_names_the_connector_and_field(
    redis: Redis, clock: ManualClock, provider: dict[str, Any], problems: list[str]
) -> None:
    config = ConnectorConfig(name="gh-api", type="GITHUB", provider_config=provider)
    context = ConnectorContext(
        store=StateStore(redis, config, Lease(redis, config.name, ttl_s=30), clock=clock),
        clock=clock, logger=get_logger())

    with pytest.raises(ConfigError) as caught:
        create_github_connector(config, context)

    message = str(caught.value)
    assert message.startswith("GITHUB connector gh-api: ")
    for problem in problems:
        assert problem in message


def test_the_token_never_appears_in_the_parsed_settings() -> None:
    config = ConnectorConfig(name="gh-api", type="GITHUB",
                             provider_config={"repositories": [REPO], "token": "ghp_s3cr3t"})
    settings = parse_provider_config(GitHubConfig, config)
    assert "ghp_s3cr3t" not in repr(settings) and "ghp_s3cr3t" not in str(settings)
    assert settings.headers()["Authorization"] == "Bearer ghp_s3cr3t"
    assert settings.issues_url(REPO) == "https://api.github.com/repos/octo-org/api/issues"


# -- the real process --------------------------------------------------------------------

def test_connector_run_once_polls_github_and_logs_the_failing_repository(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer, sync: sync_redis.Redis
) -> None:
    replay.route(PATH, listing(PAGE1 + PAGE2, etag='W/"p1"'))
    replay.route("/repos/octo-org/gone/issues",
                 Reply(404, body=(FIXTURES / "error_404.json").read_bytes()))
    config = write_config(tmp_path / "connectors.json", {
        "name": "gh-api", "type": "GITHUB", "pollIntervalMs": 1000, "maxRetries": 0,
        "providerConfig": {"baseUrl": replay.url, "token": "${GITHUB_TOKEN}",
                           "repositories": ["octo-org/gone", REPO]}})
    process = ConnectorProcess(
        "gh-api", redis_url=redis_server.url, config=config, log=tmp_path / "gh.log",
        args=("--once",), env={"GITHUB_TOKEN": "ghp_fr0m_env"})
    try:
        assert process.wait() == 0
        failed = process.wait_for("repository_failed", repository="octo-org/gone")
    finally:
        process.close()

    assert "404 Not Found" in failed["error"]
    assert sync.xlen("raw-input-signals") == 3
    assert replay.requests_to(PATH)[0].headers["authorization"] == "Bearer ghp_fr0m_env"
    assert "ghp_fr0m_env" not in (tmp_path / "gh.log").read_text()
