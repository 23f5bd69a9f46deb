"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): sign in, see a running connector, pause it and watch it stop polling,
replay a dead letter, and see the page say that Redis is down. Each step leaves a
screenshot in ``$TEST_ARTIFACTS_DIR/console`` (default ``test-artifacts/console``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from redis.asyncio import Redis

from framework.consuming.dead_letters import DeadLetterStream, Failure
from framework.consuming.delivery import Delivery
from framework.core import create_redis
from framework.polling import load_fleet_config
from framework.testing import RedisServer, ReplayServer, Reply, free_port
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.noaa_feed import ChangingFeed
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from tests.process import ConnectorProcess, noaa_entry, write_config
from worker.ops import Role

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts")) / "console"
NAME = "weather-noaa"

pytestmark = pytest.mark.slow  # a browser, and for some a connector process


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail("Debian's chromium is missing: apt-get install chromium "
                    "(scripts/setup --dev installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(url)
    await page.fill("#token", token)
    await page.click("#sign-in")


async def test_sign_in_see_the_fleet_and_pause_a_connector(
    browser: Browser, tmp_path: Path, replay: ReplayServer, redis_server: RedisServer,
    redis: Redis,
) -> None:
    feed = ChangingFeed(size=5)
    replay.route("/alerts/active", lambda _: Reply(body=feed.next_body()))
    port = free_port()
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, replay.url, pollIntervalMs=200))
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "w.log", args=("--metrics-port", str(port)))
    try:
        await asyncio.to_thread(worker.wait_for, "poll_completed")
        page = await browser.new_page()
        await sign_in(page, f"http://127.0.0.1:{port}/", operator)
        await expect(page.locator("#who")).to_have_text("operator-tester (operator)")
        row = page.locator(f'tr[data-connector="{NAME}"]')
        await expect(row.locator(".state")).to_have_text("healthy", timeout=10_000)
        await row.get_by_role("button", name=NAME).click()
        await expect(page.locator("#details")).to_contain_text('"pollIntervalMs": 200')
        await screenshot(page, "1-fleet")

        await row.get_by_role("button", name="Pause").click()
        await expect(row.locator(".state")).to_have_text("paused by operator-tester")
        await asyncio.to_thread(worker.wait_for, "connector_paused", timeout_s=5)
        await asyncio.sleep(0.3)  # a poll already running may finish
        seen = feed.requests
        await asyncio.sleep(1.5)  # 7 poll intervals
        assert feed.requests == seen
        await screenshot(page, "2-paused")

        await row.get_by_role("button", name="Resume").click()
        await asyncio.to_thread(wait_until, lambda: feed.requests > seen + 2, timeout_s=10)
        await expect(row.locator(".state")).to_have_text("healthy", timeout=10_000)
        await screenshot(page, "3-resumed")
    finally:
        worker.close()


async def test_a_viewer_sees_the_buttons_disabled(browser: Browser, redis: Redis,
                                                  tmp_path: Path) -> None:
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    await dead_letter(redis)
    async with serving(redis, empty_fleet) as (_, base):
        page = await browser.new_page()
        await sign_in(page, f"{base}/", viewer)
        await expect(page.locator("#who")).to_have_text("viewer-tester (viewer)")
        await page.locator("#groups").get_by_role("button", name="Show").click()
        await expect(page.locator("#dead-letters").get_by_role("button", name="Replay")
                     ).to_be_disabled()
        await screenshot(page, "4-viewer")


async def dead_letter(redis: Redis) -> str:
    entry_id = str(await redis.xadd("orders", {"order": "42"}))
    await redis.xgroup_create("orders", "workers", id="0")
    await redis.xreadgroup("workers", "c1", {"orders": ">"})
    letter = await DeadLetterStream(redis, "orders").write(
        Delivery("orders", entry_id, {"order": "42"}, "workers", "c1", 5),
        Failure(reason="the ERP answered 503", error_type="TransientSourceError",
                attempts=5, rule="sync-order"), at_s=1_800_000_000.0)
    assert letter is not None
    return letter


async def test_replay_a_dead_letter(browser: Browser, redis: Redis) -> None:
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    letter = await dead_letter(redis)
    async with serving(redis, empty_fleet) as (_, base):
        page = await browser.new_page()
        await sign_in(page, f"{base}/", operator)
        await expect(page.locator("#who")).to_have_text("operator-tester (operator)")
        await page.locator("#groups").get_by_role("button", name="Show").click()
        row = page.locator(f'tr[data-dead-letter="{letter}"]')
        await expect(row).to_contain_text("the ERP answered 503")
        await screenshot(page, "5-dead-letter")
        await row.get_by_role("button", name="Replay").click()
        await expect(page.locator("#notice")).to_have_text(
            "replayed 1, missing 0, failed 0")
        await expect(row).to_have_count(0)
        await expect(page.locator("#dlq-summary")).to_have_text("orders:dlq: 0 dead letter(s)")
        await screenshot(page, "6-replayed")
    replayed = [fields for _, fields in await redis.xrange("orders") if "replay_of" in fields]
    assert replayed == [{"order": "42", "replay_of": replayed[0]["replay_of"]}]
    assert await redis.xlen("orders:dlq") == 0


async def test_the_page_says_when_redis_is_down(browser: Browser) -> None:
    with RedisServer() as server:
        redis = create_redis(server.url)
        try:
            async with serving(redis, empty_fleet) as (_, base):
                page = await browser.new_page()
                await page.goto(f"{base}/")
                await expect(page.locator("#connectors")).to_be_attached()
                await expect(page.locator("#banner")).to_be_hidden()
                server.stop()
                banner = page.locator("#banner")
                await expect(banner).to_contain_text("Redis is unavailable", timeout=15_000)
                await screenshot(page, "7-redis-down")
        finally:
            await redis.aclose()


async def test_the_page_follows_the_event_stream(browser: Browser, redis: Redis,
                                                 tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", noaa_entry(NAME, "http://127.0.0.1:9"))
    fleet = load_fleet_config(config)
    async with serving(redis, lambda: fleet) as (_, base):
        page = await browser.new_page()
        async with page.expect_request("**/api/v1/events"):
            await page.goto(f"{base}/")
        row = page.locator(f'tr[data-connector="{NAME}"]')
        await expect(row).to_be_attached()
        # Another operator pauses it (here: straight in Redis): the page shows it.
        await redis.hset(f"fleet:control:{NAME}", "paused",
                         '{"by": "someone-else", "reason": "r", "at": "now"}')
        await expect(row.locator(".state")).to_have_text("paused by someone-else",
                                                         timeout=10_000)
        await screenshot(page, "8-live")


async def test_lag_charts_follow_a_group_falling_behind_and_catching_up(
    browser: Browser, redis: Redis, tmp_path: Path,
) -> None:
    """The chart samples the lag the page receives (event stream, refresh) and keeps it
    in the tab: a reload shows the history again. A connector whose last success is
    long ago has its own chart."""
    await redis.xgroup_create("readings", "alarms", id="0", mkstream=True)
    await redis.hset(f"metrics:connector:{NAME}", mapping={
        "connectorName": NAME, "lastSuccessTime": "2026-01-01T00:00:00.000Z"})
    fleet = load_fleet_config(write_config(tmp_path / "c.json",
                                           noaa_entry(NAME, "http://127.0.0.1:9")))
    async with serving(redis, lambda: fleet) as (_, base):
        page = await browser.new_page()
        await page.goto(f"{base}/")
        row = page.locator('tr[data-series="group:readings/alarms"]')
        await expect(row.locator(".lag-now")).to_have_text("0 entries", timeout=10_000)
        for n in range(5):
            await redis.xadd("readings", {"n": str(n)})
        await expect(row.locator(".lag-now")).to_have_text("5 entries", timeout=10_000)
        await redis.xreadgroup("alarms", "c1", {"readings": ">"})
        await expect(row.locator(".lag-now")).to_have_text("0 entries", timeout=10_000)
        await expect(row.locator(".lag-max")).to_have_text("5 entries")
        await screenshot(page, "9-lag-chart")
        readings = int(await row.get_attribute("data-points") or "0")
        assert readings >= 3  # 0, then 5, then 0 again
        drawn = await row.locator("polyline").get_attribute("points") or ""
        assert len(drawn.split()) == readings

        connector = page.locator(f'tr[data-series="connector:{NAME}"]')
        await expect(connector.locator(".lag-name")).to_have_text(f"connector {NAME}")
        await expect(connector.locator(".lag-now")).to_have_text(re.compile(r"^\d+\.\d d$"))
        days = float((await connector.locator(".lag-now").inner_text()).removesuffix(" d"))
        assert days > 1  # behind since 2026-01-01

        await page.reload()
        await expect(row.locator(".lag-max")).to_have_text("5 entries")
        assert int(await row.get_attribute("data-points") or "0") >= readings
