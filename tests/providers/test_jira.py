"""The JIRA connector against a local server replaying Jira Cloud's enhanced search."""

from __future__ import annotations

import base64
import copy
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
    TransientSourceError,
)
from framework.core.logs import get_logger
from framework.polling.config import ConnectorConfig, RetryConfig, parse_provider_config
from framework.polling.lease import Lease
from framework.polling.poller import PollingConnector, PollSummary
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from framework.testing import RedisServer, ReplayServer, Reply
from framework.testing.replay_http import RecordedRequest
from providers.jira import JiraConfig, JiraIssue, create_jira_connector
from providers.jira.jql import incremental_jql, split_order_by, window_minutes
from tests.conftest import FIXTURES as ALL_FIXTURES
from tests.helpers import ManualClock, stream_items
from tests.process import ConnectorProcess, write_config

PATH = "/rest/api/3/search/jql"
FIXTURES = ALL_FIXTURES / "jira"
JQL = "project = SEC AND status = Open"
VERSIONS = "connector:state:jira-prod:versions"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


Factory = Callable[..., PollingConnector]


@pytest.fixture
async def make_jira(
    redis: Redis, replay: ReplayServer, clock: ManualClock
) -> AsyncIterator[Factory]:
    built: list[PollingConnector] = []
    lease = Lease(redis, "jira-prod", ttl_s=30)
    assert await lease.try_acquire()

    def make(**provider: Any) -> PollingConnector:
        config = ConnectorConfig(
            name="jira-prod", type="JIRA", max_retries=2,
            retry_config=RetryConfig(base_delay_ms=100, max_delay_ms=5000, jitter_ratio=0.0),
            provider_config={"baseUrl": replay.url, "jql": JQL, "email": "bot@example.com",
                             "apiToken": "s3cr3t-token", "pageSize": 2} | provider,
        )
        context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                                   clock=clock, logger=get_logger(connector=config.name))
        connector = create_jira_connector(config, context)
        built.append(connector)
        return connector

    yield make
    for connector in built:
        await connector.aclose()


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return body


def page(issues: list[dict[str, Any]], token: str | None = None) -> Reply:
    body: dict[str, Any] = {"issues": issues, "isLast": token is None}
    if token:
        body["nextPageToken"] = token
    return Reply(body=body)


def by_token(pages: dict[str | None, Reply]) -> Callable[[RecordedRequest], Reply]:
    """Answer each request with the page its nextPageToken names (None: the first)."""
    return lambda request: pages[request.query.get("nextPageToken")]


ISSUES = recorded("search_page1.json")["issues"] + recorded("search_page2.json")["issues"]


def issue(number: int) -> dict[str, Any]:
    return copy.deepcopy(ISSUES[number])


def edited(raw: dict[str, Any], updated: str, **fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    raw["fields"] |= {"updated": updated, **fields}
    return raw


async def published(redis: Redis) -> list[JiraIssue]:
    return [JiraIssue.model_validate(orjson.loads(e["payload"])) for e in await stream_items(redis)]


async def test_recorded_pages_are_followed_and_published_as_issues(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, by_token({
        None: Reply.from_file(FIXTURES / "search_page1.json"),
        "CAEaAggD": Reply.from_file(FIXTURES / "search_page2.json"),
    }))

    summary = await make_jira().poll()

    assert summary == PollSummary(fetched=3, published=3)
    first, second = replay.requests_to(PATH)
    assert first.query["jql"] == JQL and first.query["maxResults"] == "2"
    assert "nextPageToken" not in first.query and second.query["nextPageToken"] == "CAEaAggD"
    assert first.query["fields"].split(",")[:3] == ["summary", "status", "priority"]
    expected = base64.b64encode(b"bot@example.com:s3cr3t-token").decode()
    assert first.headers["authorization"] == f"Basic {expected}"
    issues = await published(redis)
    assert [i.key for i in issues] == ["SEC-42", "SEC-39", "SEC-17"]
    sec42 = issues[0]
    assert (sec42.id, sec42.project, sec42.issueType, sec42.status, sec42.statusCategory) == (
        "10231", "SEC", "Bug", "Open", "new")
    assert (sec42.priority, sec42.assignee, sec42.reporter) == (
        "High", "Mia Krystof", "Emma Richards")
    assert sec42.labels == ["security", "secrets"] and sec42.dueDate == "2026-11-25"
    assert sec42.url == f"{replay.url}/browse/SEC-42"
    assert sec42.otherFields["customfield_10020"][0]["name"] == "SEC Sprint 12"
    assert issues[1].assignee is None and issues[2].priority is None
    assert (await stream_items(redis))[0]["item_id"] == "10231"


async def test_edited_issue_is_republished_and_a_closed_one_is_pruned(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    jira = make_jira(pageSize=10)
    replay.route(PATH, page([issue(0), issue(1), issue(2)]),
                 page([edited(issue(0), "2026-11-21T09:00:00.000+0100",
                              status={"name": "In Progress"}), issue(2)]))
    await jira.poll()

    summary = await jira.poll()

    assert summary == PollSummary(fetched=2, published=1, skipped_unchanged=1, removed=1)
    assert (await published(redis))[3].status == "In Progress"
    assert sorted(await redis.hkeys(VERSIONS)) == ["10197", "10231"]


async def test_a_view_that_only_moves_last_viewed_publishes_nothing(
    make_jira: Factory, replay: ReplayServer
) -> None:
    jira = make_jira(fields=["summary", "lastViewed"])
    viewed = issue(0)
    viewed["fields"]["lastViewed"] = "2026-11-21T10:00:00.000+0100"
    replay.route(PATH, page([issue(0)]), page([viewed]))
    await jira.poll()

    summary = await jira.poll()

    assert summary == PollSummary(fetched=1, skipped_unchanged=1)
    assert replay.requests_to(PATH)[0].query["fields"] == "summary,lastViewed,updated"


async def test_malformed_issues_are_isolated_and_counted(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    no_id = issue(1)
    no_id.pop("id")
    no_fields = {"id": "10300", "key": "SEC-50", "self": "https://example.atlassian.net/x"}
    bad_status = issue(2)
    bad_status["fields"]["status"] = "Open"
    replay.route(PATH, page([issue(0), no_id, no_fields, bad_status]))

    summary = await make_jira(pageSize=10).poll()

    assert summary == PollSummary(fetched=4, published=1, failed=3)
    assert [i.key for i in await published(redis)] == ["SEC-42"]


async def test_an_issue_repeated_across_pages_is_published_once(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    # Newest first: an issue edited while we page shows up again on a later page.
    replay.route(PATH, by_token({None: page([issue(0), issue(1)], "t2"),
                                 "t2": page([issue(1), issue(2)])}))

    summary = await make_jira().poll()

    assert summary == PollSummary(fetched=3, published=3)
    assert [i.key for i in await published(redis)] == ["SEC-42", "SEC-39", "SEC-17"]


async def test_jql_error_is_permanent_and_names_the_problem(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, Reply(400, body=(FIXTURES / "error_400_jql.json").read_bytes()))

    with pytest.raises(PermanentSourceError, match="400 Bad Request.*reserved JQL character"):
        await make_jira().poll()

    assert len(replay.requests_to(PATH)) == 1
    assert not await redis.exists("connector:state:jira-prod")


async def test_bad_credentials_fail_without_showing_the_token(
    make_jira: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(401, body=(FIXTURES / "error_401.json").read_bytes()))

    with pytest.raises(PermanentSourceError, match="401 Unauthorized.*not authenticated") as err:
        await make_jira().poll()

    assert "s3cr3t-token" not in str(err.value)


async def test_429_waits_its_retry_after_and_5xx_is_retried(
    make_jira: Factory, replay: ReplayServer, clock: ManualClock, redis: Redis
) -> None:
    replay.route(PATH, Reply(429, body="Rate limit exceeded", content_type="text/plain",
                             headers={"Retry-After": "2"}),
                 Reply(503, body="Service Unavailable", content_type="text/plain"),
                 page([issue(0)]))

    summary = await make_jira().poll()

    assert summary == PollSummary(fetched=1, published=1)
    assert clock.sleeps == [2.0, 0.2]


async def test_persistent_5xx_fails_the_poll_and_keeps_the_state(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    jira = make_jira()
    replay.route(PATH, page([issue(0)]))
    await jira.poll()
    replay.route(PATH, Reply(500, body={"errorMessages": ["Internal server error"]}))

    with pytest.raises(TransientSourceError, match="500"):
        await jira.poll()

    assert await redis.hkeys(VERSIONS) == ["10231"]


async def test_a_page_that_is_not_last_without_a_token_fails_instead_of_pruning(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    jira = make_jira()
    replay.route(PATH, page([issue(0), issue(1)]))
    await jira.poll()
    replay.route(PATH, Reply(body={"issues": [issue(0)], "isLast": False}))

    with pytest.raises(MalformedResponseError, match="isLast=False.*no nextPageToken"):
        await jira.poll()

    assert sorted(await redis.hkeys(VERSIONS)) == ["10228", "10231"]


def offset_page(start: int, total: int, issues: list[dict[str, Any]]) -> Reply:
    return Reply(body={"expand": "schema,names", "startAt": start, "maxResults": 2,
                       "total": total, "issues": issues})


async def test_data_center_search_is_paged_by_start_at(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route("/rest/api/2/search", lambda request: {
        "0": offset_page(0, 3, [issue(0), issue(1)]),
        "2": offset_page(2, 3, [issue(2)]),
    }[request.query.get("startAt", "0")])

    summary = await make_jira(searchPath="/rest/api/2/search", email=None).poll()

    assert summary == PollSummary(fetched=3, published=3)
    assert [r.query.get("startAt") for r in replay.requests] == [None, "2"]
    assert replay.requests[0].headers["authorization"] == "Bearer s3cr3t-token"


async def test_an_empty_offset_page_before_the_total_fails_instead_of_pruning(
    make_jira: Factory, replay: ReplayServer
) -> None:
    replay.route("/rest/api/2/search", offset_page(0, 3, [issue(0), issue(1)]),
                 offset_page(2, 3, []))

    with pytest.raises(MalformedResponseError, match="empty page at startAt=2 of total=3"):
        await make_jira(searchPath="/rest/api/2/search").poll()


async def test_a_repeated_page_token_stops_the_poll(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    replay.route(PATH, page([issue(0)], "same"))

    with pytest.raises(MalformedResponseError, match=r"next page \(nextPageToken=same\) was"):
        await make_jira().poll()

    assert len(replay.requests_to(PATH)) == 2 and await redis.xlen("raw-input-signals") == 0


async def test_a_body_that_is_not_a_search_result_is_malformed(
    make_jira: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, Reply(body=[issue(0)]))

    with pytest.raises(MalformedResponseError, match="'issues' list, got a JSON list"):
        await make_jira().poll()


async def test_more_issues_than_max_issues_fail_before_pruning(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    jira = make_jira(maxIssues=2)
    replay.route(PATH, page([issue(0), issue(1)]))
    await jira.poll()
    replay.route(PATH, by_token({None: page([issue(2), issue(1)], "t2"),
                                 "t2": page([issue(0)])}))

    with pytest.raises(PermanentSourceError, match="more than maxIssues=2"):
        await jira.poll()

    assert sorted(await redis.hkeys(VERSIONS)) == ["10228", "10231"]


@pytest.mark.parametrize("email", [None, ""])  # "" is an unset ${JIRA_EMAIL:-}
async def test_bearer_token_without_email(
    make_jira: Factory, replay: ReplayServer, email: str | None
) -> None:
    replay.route(PATH, page([]))

    await make_jira(email=email).poll()

    assert replay.requests[0].headers["authorization"] == "Bearer s3cr3t-token"


async def test_a_poll_failing_on_page_two_publishes_nothing_and_a_restart_reads_all(
    make_jira: Factory, replay: ReplayServer, redis: Redis
) -> None:
    down = Reply(503, body="Service Unavailable", content_type="text/plain")
    replay.route(PATH, by_token({None: page([issue(0), issue(1)], "t2"), "t2": down}))
    with pytest.raises(TransientSourceError, match="503"):
        await make_jira().poll()
    assert await redis.xlen("raw-input-signals") == 0

    replay.route(PATH, by_token({None: page([issue(0), issue(1)], "t2"),
                                 "t2": page([issue(2)])}))
    summary = await make_jira().poll()  # a new instance, as after a crash

    assert summary == PollSummary(fetched=3, published=3)


# -- incremental mode --------------------------------------------------------------------

async def test_incremental_mode_asks_only_for_what_changed_since_the_last_poll(
    make_jira: Factory, replay: ReplayServer, clock: ManualClock, redis: Redis
) -> None:
    jira = make_jira(mode="incremental", jql="project = SEC ORDER BY key", overlapMinutes=2)
    replay.route(PATH, page([issue(0), issue(1)]),
                 page([edited(issue(1), "2026-11-21T09:00:00.000+0100"), issue(0)]))
    await jira.poll()
    clock.now_s += 10 * 60 + 1

    summary = await jira.poll()

    first, second = (r.query["jql"] for r in replay.requests_to(PATH))
    assert first == "(project = SEC) ORDER BY updated DESC"
    assert second == '(project = SEC) AND updated >= "-13m" ORDER BY updated DESC'
    assert summary == PollSummary(fetched=2, published=1, skipped_unchanged=1)
    cursors = orjson.loads(await redis.hget("connector:state:jira-prod", "cursors") or "{}")
    assert cursors == {"pollStartedAt": f"{clock.now_s:.3f}"}


async def test_incremental_failure_keeps_the_window_start(
    make_jira: Factory, replay: ReplayServer, clock: ManualClock
) -> None:
    jira = make_jira(mode="incremental")
    down = Reply(500, body="down", content_type="text/plain")
    replay.route(PATH, page([issue(0)]), down, down, down, page([]))
    await jira.poll()
    clock.now_s += 60
    with pytest.raises(TransientSourceError):
        await jira.poll()
    clock.now_s += 60

    await jira.poll()

    assert replay.requests_to(PATH)[-1].query["jql"].endswith(
        'AND updated >= "-7m" ORDER BY updated DESC')


async def test_incremental_first_poll_reads_only_the_initial_lookback(
    make_jira: Factory, replay: ReplayServer
) -> None:
    replay.route(PATH, page([]))

    await make_jira(mode="incremental", initialLookbackMinutes=1440).poll()

    assert replay.requests_to(PATH)[0].query["jql"] == (
        f'({JQL}) AND updated >= "-1440m" ORDER BY updated DESC')


def test_order_by_inside_quotes_is_part_of_the_condition() -> None:
    jql = 'summary ~ "sort order by date" ORDER BY created'
    assert split_order_by(jql) == ('summary ~ "sort order by date"', "ORDER BY created")
    assert incremental_jql("order by rank", 3) == 'updated >= "-3m" ORDER BY updated DESC'
    assert window_minutes(0.5, 5) == 6 and window_minutes(-30, 5) == 5


# -- configuration -----------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "problems"), [
    ({}, ["baseUrl is required", "jql is required"]),
    ({"baseUrl": "http://jira.local", "jql": "x", "email": "a@b.c"},
     ["email is set but apiToken is not"]),
    ({"baseUrl": "http://jira.local", "jql": "x", "mode": "stream", "pageSize": 0},
     ["providerConfig.mode", "providerConfig.pageSize"]),
    ({"baseUrl": "http://jira.local", "jql": "x", "project": "SEC"},
     ["providerConfig.project: unknown field"]),
])
async def test_invalid_provider_config_names_the_connector_and_field(
    redis: Redis, clock: ManualClock, provider: dict[str, Any], problems: list[str]
) -> None:
    config = ConnectorConfig(name="jira-prod", type="JIRA", provider_config=provider)
    lease = Lease(redis, config.name, ttl_s=30)
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=clock),
                               clock=clock, logger=get_logger())

    with pytest.raises(ConfigError) as caught:
        create_jira_connector(config, context)

    message = str(caught.value)
    assert message.startswith("JIRA connector jira-prod: ")
    for problem in problems:
        assert problem in message


def test_the_token_never_appears_in_the_parsed_settings() -> None:
    config = ConnectorConfig(name="jira-prod", type="JIRA",
                             provider_config={"baseUrl": "http://jira.local", "jql": "x",
                                              "apiToken": "s3cr3t-token"})
    settings = parse_provider_config(JiraConfig, config)
    assert "s3cr3t-token" not in repr(settings) and "s3cr3t-token" not in str(settings)
    assert settings.auth_headers() == {"Authorization": "Bearer s3cr3t-token"}


# -- the real process --------------------------------------------------------------------

def test_connector_run_once_polls_jira_with_the_token_from_the_environment(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer, sync: sync_redis.Redis
) -> None:
    replay.route(PATH, by_token({None: Reply.from_file(FIXTURES / "search_page1.json"),
                                 "CAEaAggD": Reply.from_file(FIXTURES / "search_page2.json")}))
    config = write_config(tmp_path / "connectors.json", {
        "name": "jira-prod", "type": "JIRA", "pollIntervalMs": 1000, "maxRetries": 0,
        "providerConfig": {"baseUrl": "${JIRA_BASE_URL}", "email": "${JIRA_EMAIL:-}",
                           "apiToken": "${JIRA_API_TOKEN}", "jql": JQL}})
    process = ConnectorProcess(
        "jira-prod", redis_url=redis_server.url, config=config, log=tmp_path / "jira.log",
        args=("--once",), env={"JIRA_BASE_URL": replay.url, "JIRA_API_TOKEN": "pat-s3cr3t"})
    try:
        assert process.wait() == 0
    finally:
        process.close()

    assert sync.xlen("raw-input-signals") == 3
    assert replay.requests[0].headers["authorization"] == "Bearer pat-s3cr3t"
    assert "pat-s3cr3t" not in (tmp_path / "jira.log").read_text()
