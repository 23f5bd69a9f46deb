"""The real ``connector-run`` processes honour the operator controls set through the
control API: a pause stops polling on every replica within one poll interval (and
survives a lease hand-over), resume starts again, poll now polls at once, restart
rebuilds the connector, and a failed poll's error is shown as the last error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import create_redis
from framework.polling import load_fleet_config
from framework.testing import RedisServer, ReplayServer, Reply
from tests.helpers import wait_until
from tests.noaa_feed import ChangingFeed
from tests.ops.api_client import Api, serving, tokens_for_every_role
from tests.process import ConnectorProcess, noaa_entry, write_config
from worker.ops import Role

NAME = "weather-noaa"


@pytest.fixture
def feed(replay: ReplayServer) -> ChangingFeed:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    return feed


@pytest.fixture
def processes() -> Iterator[list[ConnectorProcess]]:
    started: list[ConnectorProcess] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = create_redis(redis_server.url)
    await redis.flushall()
    yield redis
    await redis.aclose()


def start(processes: list[ConnectorProcess], config: Path, url: str, tmp_path: Path
          ) -> ConnectorProcess:
    process = ConnectorProcess(NAME, redis_url=url, config=config,
                               log=tmp_path / f"w{len(processes)}.log")
    processes.append(process)
    return process


async def logged(process: ConnectorProcess, event: str, **fields: Any) -> dict[str, Any]:
    """The process's log event, waited for off the event loop (the API serves on it)."""
    return await asyncio.to_thread(process.wait_for, event, **fields)


async def subscribed(redis: Redis, workers: int) -> None:
    """Wait until ``workers`` processes follow the control channel."""
    async with asyncio.timeout(10):
        # Redis has no event for this: ask it until it says so.
        while (await redis.pubsub_numsub("fleet:control"))[0][1] < workers:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def act(api: Api, token: str, action: str, **body: Any) -> None:
    answer = await api.call("POST", f"/api/v1/connectors/{{name}}/{action}", token, name=NAME,
                            json_body=body or None)
    assert answer.status_code in (200, 202), answer.text


@pytest.mark.slow  # two real processes, a lease hand-over
async def test_pause_holds_on_every_replica_until_resumed(
    tmp_path: Path, feed: ChangingFeed, replay: ReplayServer, redis_server: RedisServer,
    client: Redis, processes: list[ConnectorProcess],
) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=200))
    fleet = load_fleet_config(config)
    first = start(processes, config, redis_server.url, tmp_path)
    await logged(first, "poll_completed")
    second = start(processes, config, redis_server.url, tmp_path)
    await logged(second, "standby")
    operator = (await tokens_for_every_role(client))[Role.OPERATOR]
    async with serving(client, lambda: fleet) as (api, _):
        await act(api, operator, "pause", reason="test")
        await logged(first, "connector_paused", timeout_s=5)
        await asyncio.sleep(0.3)  # a poll already running when the flag was set may finish
        seen = feed.requests
        await asyncio.sleep(1.5)  # 7 intervals
        assert feed.requests == seen
        # The standby that takes over the lease finds the flag too.
        await act(api, operator, "release-lease")
        await logged(second, "lease_acquired", timeout_s=10)
        await logged(second, "connector_paused", timeout_s=5)
        await asyncio.sleep(1.0)
        assert feed.requests == seen
        await act(api, operator, "resume")
        await logged(second, "connector_resumed", timeout_s=5)
        await asyncio.to_thread(wait_until, lambda: feed.requests >= seen + 3, timeout_s=5)


@pytest.mark.slow  # a real process
async def test_poll_now_restart_and_last_error(
    tmp_path: Path, feed: ChangingFeed, replay: ReplayServer, redis_server: RedisServer,
    client: Redis, processes: list[ConnectorProcess],
) -> None:
    config = write_config(tmp_path / "c.json",
                          noaa_entry(NAME, replay.url, pollIntervalMs=600_000))
    fleet = load_fleet_config(config)
    worker = start(processes, config, redis_server.url, tmp_path)
    await logged(worker, "poll_completed")
    operator = (await tokens_for_every_role(client))[Role.OPERATOR]
    async with serving(client, lambda: fleet) as (api, _):
        await subscribed(client, 1)  # an announcement before it would be lost
        await act(api, operator, "poll")
        await asyncio.to_thread(wait_until, lambda: feed.requests >= 2, timeout_s=10)
        await act(api, operator, "restart")
        await logged(worker, "config_reloaded", changed=[], timeout_s=10)
        replay.route("/alerts/active", lambda _: Reply(status=500, body=b"{}"))
        await act(api, operator, "poll")
        await logged(worker, "poll_failed", timeout_s=10)
        shown = await api.call("GET", "/api/v1/connectors/{name}", name=NAME)
    last_error = shown.json()["lastError"]
    assert last_error is not None and "500" in last_error["error"]
    assert worker.process.poll() is None
