"""Hostile sources against the polling connectors' HTTP limits (issue 13 items 2, 3,
4, 11a, 11b): a source that trickles, one that sends hundreds of MB, one that
redirects elsewhere, one that asks to wait a day, one that nests 100,000 deep.
Each is a real server on 127.0.0.1 and each connector a real one on real Redis."""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import HostPolicy
from framework.core.clock import SystemClock
from framework.core.errors import (
    MalformedResponseError,
    PollTimeoutError,
    RateLimitedError,
    ResponseTooLargeError,
    SourceError,
    TransientSourceError,
)
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, Lease, PollingConnector, PrometheusMetrics
from framework.polling.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_RETRY_AFTER_MS
from framework.polling.registry import ConnectorContext
from framework.polling.state import StateStore
from providers.builtin import default_registry
from providers.http import HttpActions
from tests.chaos.hostile_http import HostileServer, endless, json_answer, redirect, trickle
from worker.connector.poll import PollTask
from worker.connector.schedule import RedisBackoff

NAME = "hostile"
HUNDREDS_OF_MB = 500 * 1024 * 1024
Build = Callable[..., AsyncIterator[PollingConnector]]


@pytest.fixture
def server() -> AsyncIterator[HostileServer]:
    with HostileServer() as hostile:
        yield hostile


@pytest.fixture
def elsewhere() -> AsyncIterator[HostileServer]:
    with HostileServer() as hostile:
        yield hostile


@pytest.fixture
async def lease(redis: Redis) -> Lease:
    lease = Lease(redis, NAME, ttl_s=30)
    assert await lease.try_acquire()
    return lease


@pytest.fixture
async def connectors(redis: Redis, lease: Lease) -> AsyncIterator[Callable[..., Any]]:
    built: list[PollingConnector] = []

    def build(type_name: str, provider: dict[str, Any], **fields: Any) -> PollingConnector:
        config = ConnectorConfig(name=NAME, type=type_name, provider_config=provider, **fields)
        context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                                   clock=SystemClock(), logger=get_logger(connector=NAME))
        connector = default_registry().create(config, context)
        built.append(connector)
        return connector

    yield build
    for connector in built:
        await connector.aclose()


def http_json(url: str, **provider: Any) -> dict[str, Any]:
    return {"url": url, "idField": "id", **provider}


# -- item 2: deadlines --------------------------------------------------------------------


async def test_a_trickling_source_fails_the_request_at_its_total_deadline(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    body = b'[{"id": "a", "padding": "' + b"." * 40 + b'"}]'
    server.routes["/items"] = trickle(body, byte_every_s=0.1)  # ~6 s for the body
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"),
                           request_timeout_ms=1000, max_retries=0)
    started = time.monotonic()
    with pytest.raises(TransientSourceError) as caught:
        await connector.poll()
    # The documented bound: one attempt ends at requestTimeoutMs, body included
    # (the slack is for a loaded machine, far below the body's 6 s).
    assert time.monotonic() - started < 4.0
    assert f"connector {NAME}:" in str(caught.value)
    assert "requestTimeoutMs=1000" in str(caught.value)


async def test_a_poll_past_its_deadline_ends_in_poll_failed_naming_the_connector(
    server: HostileServer, connectors: Callable[..., PollingConnector], lease: Lease
) -> None:
    server.routes["/items"] = trickle(b'[{"id": "a"}]' + b" " * 100, byte_every_s=0.1)
    # Each attempt ends at 1 s and is retried 5 times: 6 s and more, past the 2 s poll.
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"),
                           request_timeout_ms=1000, poll_timeout_ms=2000, max_retries=5,
                           retry_config={"baseDelayMs": 50, "maxDelayMs": 100})
    task = PollTask(NAME, lease=lease, backoff=RedisBackoff(),
                    metrics=PrometheusMetrics.create(CollectorRegistry()),
                    logger=get_logger(connector=NAME))
    with structlog.testing.capture_logs() as logs:
        outcome = await task.run(connector)
    assert outcome.summary is None
    failed = [entry for entry in logs if entry["event"] == "poll_failed"]
    assert len(failed) == 1
    assert failed[0]["error_type"] == PollTimeoutError.__name__
    assert failed[0]["connector"] == NAME
    assert f"connector {NAME}:" in failed[0]["error"]
    assert "pollTimeoutMs=2000" in failed[0]["error"]


def test_the_poll_deadline_is_derived_from_the_interval_and_the_request_budget() -> None:
    fast = ConnectorConfig(name=NAME, type="T", poll_interval_ms=1000)
    slow = ConnectorConfig(name=NAME, type="T", poll_interval_ms=600_000)
    # Twice one request's worst case: 3 attempts of 10 s and 2 backoffs of 10 s.
    assert fast.poll_deadline_ms == 2 * (3 * 10_000 + 2 * 10_000)
    assert slow.poll_deadline_ms == 3 * 600_000
    assert ConnectorConfig(name=NAME, type="T", poll_timeout_ms=15_000).poll_deadline_ms == 15_000
    with pytest.raises(ValueError, match="pollTimeoutMs must be greater"):
        ConnectorConfig(name=NAME, type="T", poll_timeout_ms=5_000, request_timeout_ms=6_000)


# -- item 3: body size ----------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.mark.slow
async def test_hundreds_of_mb_streamed_stop_at_the_default_max_body_bytes(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    server.routes["/items"] = endless(server, total_bytes=HUNDREDS_OF_MB, declare_length=False)
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"), max_retries=0)
    peak_before = _peak_rss_mb()
    with pytest.raises(ResponseTooLargeError) as caught:
        await connector.poll()
    assert f"maxBodyBytes={DEFAULT_MAX_BODY_BYTES}" in str(caught.value)
    assert f"connector {NAME}:" in str(caught.value)
    # Read up to the limit, not the 500 MB: the peak grew by the limit and its copy at most.
    assert _peak_rss_mb() - peak_before < 3 * DEFAULT_MAX_BODY_BYTES / 2**20
    assert server.bytes_sent < HUNDREDS_OF_MB / 4


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    server.routes["/items"] = endless(server, total_bytes=HUNDREDS_OF_MB, declare_length=True)
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"), max_retries=0,
                           max_body_bytes=1_000_000)
    with pytest.raises(ResponseTooLargeError) as caught:
        await connector.poll()
    assert f"Content-Length {HUNDREDS_OF_MB}" in str(caught.value)
    assert "maxBodyBytes=1000000" in str(caught.value)


async def test_a_huge_rate_limit_answer_is_not_read_whole_by_the_rate_limit_transport(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    server.routes["/repos/o/r/issues"] = endless(server, total_bytes=HUNDREDS_OF_MB,
                                                 declare_length=False, status=403)
    connector = connectors("GITHUB", {"baseUrl": server.url, "repositories": ["o/r"]},
                           max_retries=0, max_body_bytes=1_000_000)
    with pytest.raises(ResponseTooLargeError, match="maxBodyBytes=1000000"):
        await connector.poll()
    assert server.bytes_sent < HUNDREDS_OF_MB / 4


# -- item 4: redirects ----------------------------------------------------------------------

SECRET_HEADERS = {"authorization", "x-api-key", "private-token", "dd-api-key",
                  "dd-application-key", "cookie"}
SOURCES = {
    # type: (path, providerConfig(base url), secret values)
    "HTTP_JSON": ("/items", lambda url: http_json(url + "/items", headers={
        "X-Api-Key": "k-1234567890", "PRIVATE-TOKEN": "glpat-abcdef123456",
        "Authorization": "Bearer tok-0987654321"}),
        ["k-1234567890", "glpat-abcdef123456", "tok-0987654321"]),
    "DATADOG": ("/api/v2/events", lambda url: {
        "baseUrl": url, "apiKey": "dd-api-0123456789", "appKey": "dd-app-0123456789"},
        ["dd-api-0123456789", "dd-app-0123456789"]),
    "JIRA": ("/rest/api/3/search/jql", lambda url: {
        "baseUrl": url, "jql": "project = OPS", "email": "ops@example.com",
        "apiToken": "jira-token-0123456789"}, []),
    "GITHUB": ("/repos/o/r/issues", lambda url: {
        "baseUrl": url, "repositories": ["o/r"], "token": "ghp_0123456789abcdef"},
        ["ghp_0123456789abcdef"]),
}


@pytest.mark.parametrize("type_name", sorted(SOURCES))
async def test_a_redirect_to_another_origin_never_carries_the_credentials(
    type_name: str, server: HostileServer, elsewhere: HostileServer,
    connectors: Callable[..., PollingConnector],
) -> None:
    path, provider, secrets = SOURCES[type_name]
    server.routes[path] = redirect(elsewhere.url + "/landing")
    elsewhere.routes["/landing"] = lambda handler: json_answer(handler, b"[]")
    connector = connectors(type_name, provider(server.url), max_retries=0)
    # The landing page need not be what the source expects: only its headers count.
    with structlog.testing.capture_logs() as logs, contextlib.suppress(SourceError):
        await connector.poll()
    (sent,) = elsewhere.headers_by_path["/landing"]
    assert SECRET_HEADERS & set(sent) == set()
    assert [s for s in secrets if any(s in value for value in sent.values())] == []
    (redirected,) = [e for e in logs if e["event"] == "redirect_to_other_origin"]
    assert redirected["target"] == elsewhere.url
    assert SECRET_HEADERS & set(redirected["dropped_headers"])


async def test_a_redirect_within_the_origin_keeps_the_credentials(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    server.routes["/items"] = redirect("/moved", status=301)
    server.routes["/moved"] = lambda handler: json_answer(handler, b'[{"id": "a"}]')
    connector = connectors("HTTP_JSON", http_json(server.url + "/items",
                                                  headers={"X-Api-Key": "k-1234567890"}))
    summary = await connector.poll()
    assert summary.published == 1
    (sent,) = server.headers_by_path["/moved"]
    assert sent["x-api-key"] == "k-1234567890"


async def test_a_redirect_loop_ends_in_an_error_naming_the_connector(
    server: HostileServer, connectors: Callable[..., PollingConnector]
) -> None:
    server.routes["/items"] = redirect("/items")
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"), max_retries=0)
    with pytest.raises(SourceError, match=f"connector {NAME}: .*more than 10 redirects"):
        await connector.poll()


# -- item 11a: Retry-After ------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "cap_s"), [
    ({}, DEFAULT_MAX_RETRY_AFTER_MS / 1000),
    ({"max_retry_after_ms": 60_000}, 60.0),
])
async def test_a_retry_after_of_a_day_is_capped_and_logged(
    fields: dict[str, Any], cap_s: float, server: HostileServer,
    connectors: Callable[..., PollingConnector],
) -> None:
    server.routes["/items"] = lambda handler: json_answer(
        handler, b'{"message": "slow down"}', status=429, headers={"Retry-After": "100000"})
    connector = connectors("HTTP_JSON", http_json(server.url + "/items"), **fields)
    with structlog.testing.capture_logs() as logs, pytest.raises(RateLimitedError) as caught:
        await connector.poll()
    assert caught.value.retry_after_s == cap_s
    (capped,) = [e for e in logs if e["event"] == "retry_after_capped"]
    assert capped["retry_after_s"] == 100_000
    assert capped["max_retry_after_s"] == cap_s
    assert capped["connector"] == NAME


# -- item 11b: nesting ----------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("type_name", "path", "provider"), [
    ("HTTP_JSON", "/items", lambda url: http_json(url + "/items")),
    ("NOAA_WEATHER", "/alerts/active", lambda url: {"baseUrl": url}),
    ("DATADOG", "/api/v2/events", lambda url: {"baseUrl": url, "apiKey": "a" * 32,
                                               "appKey": "b" * 40}),
])
async def test_json_nested_100000_deep_is_a_malformed_response(
    type_name: str, path: str, provider: Callable[[str], dict[str, Any]],
    server: HostileServer, connectors: Callable[..., PollingConnector],
) -> None:
    server.routes[path] = lambda handler: json_answer(handler, DEEP)
    connector = connectors(type_name, provider(server.url), max_retries=0)
    with pytest.raises(MalformedResponseError) as caught:
        await connector.poll()
    assert f"connector {NAME}:" in str(caught.value)
    assert "not valid JSON" in str(caught.value)


# -- the capability side: http_call reads its answer under the same limit -----------------


async def test_http_call_refuses_an_answer_over_its_max_body_bytes(
    server: HostileServer, redis: Redis
) -> None:
    server.routes["/huge"] = endless(server, total_bytes=HUNDREDS_OF_MB, declare_length=False)
    actions = HttpActions(max_body_bytes=1_000_000, hosts=HostPolicy.of(["127.0.0.1"]))
    context = CallContext(idempotency_key="events:1-0:rule:step", event={}, redis=redis,
                          clock=SystemClock(), logger=get_logger(test="httplimits"))
    try:
        with pytest.raises(ResponseTooLargeError, match="maxBodyBytes=1000000"):
            await actions.http_call({"url": server.url + "/huge"}, context)
    finally:
        await actions.aclose()
    assert server.bytes_sent < HUNDREDS_OF_MB / 4
