"""The console's Devices and OTA pages in a real headless Chromium (Debian's
``chromium``, driven by Playwright) over a real ops server and Redis. The registry is
fed through providers.devices (heartbeats, the watchdog's sweep, maintenance windows)
and rollouts through providers.devices.ota's store, the API's own backends.
Screenshots go to ``$TEST_ARTIFACTS_DIR/console`` like test_console_browser's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from redis.asyncio import Redis

from framework.core import SystemClock, create_redis
from framework.testing import RedisServer
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey
from providers.devices import DeviceGroups, DeviceRegistry, Heartbeat, Watchdog
from providers.devices.ota import RolloutPlan, RolloutStore, start_rollout
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from tests.ops.test_console_browser import CHROMIUM, HAVE_CHROMIUM, screenshot, sign_in
from tests.providers.devices.rig import manifest
from worker.ops import Role

pytestmark = pytest.mark.slow  # a browser

ROLLOUT = "r-console"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail("Debian's chromium is missing: apt-get install chromium "
                    "(scripts/setup --dev installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        await launched.close()


async def open_page(browser: Browser, base: str, token: str, page_name: str) -> Page:
    page = await browser.new_page()
    await sign_in(page, f"{base}/#{page_name}", token)
    await expect(page.locator("#who")).to_contain_text("-tester (")
    return page


async def test_absent_devices_appear_and_windows_are_added_and_removed(
        browser: Browser, redis: Redis) -> None:
    clock = SystemClock()
    registry = DeviceRegistry(redis, clock=clock)
    await registry.heartbeat(Heartbeat("m-1", timeout_s=1, group="meters"))
    await registry.heartbeat(Heartbeat("m-2", timeout_s=3600, group="meters"))
    await registry.register("n-1", group="north")
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    async with serving(redis, empty_fleet) as (_, base):
        page = await open_page(browser, base, operator, "devices")
        counts = page.locator("#device-counts")
        await expect(counts.locator('[data-status="online"]')).to_have_text("online: 2")
        await expect(page.locator("#devices tr")).to_have_count(0)  # none absent yet
        await expect(page.locator("#fleet")).to_be_hidden()  # one page at a time

        await asyncio.sleep(1.1)  # m-1's deadline passes; the watchdog sweeps
        assert (await Watchdog(redis, clock=clock).step()).absent == 1  # type: ignore[union-attr]
        row = page.locator('#devices tr[data-device="m-1"]')  # shown at the next refresh
        await expect(row.locator(".status")).to_have_text("absent", timeout=10_000)
        await expect(row).to_contain_text("meters")
        seen = (await registry.show("m-1")).last_seen  # type: ignore[union-attr]
        await expect(row.locator(".last-seen")).to_have_text(str(seen))
        await expect(counts.locator('[data-status="absent"]')).to_have_text("absent: 1")
        await expect(counts.locator('[data-status="online"]')).to_have_text("online: 1")
        await expect(counts.locator('[data-status="unknown"]')).to_have_text("unknown: 1")
        await screenshot(page, "10-devices-absent")

        await page.fill("#device-group", "north")
        await page.select_option("#device-status", "")
        await page.click("#device-filter button")
        await expect(page.locator("#devices tr")).to_have_count(1)
        await expect(page.locator('#devices tr[data-device="n-1"] .status')
                     ).to_have_text("unknown")

        await page.fill("#window-group", "meters")
        await page.fill("#window-for", "2h")
        await page.fill("#window-reason", "substation works")
        await page.click("#window-add")
        window = page.locator("#windows tr", has_text="substation works")
        await expect(window).to_have_count(1)
        await expect(page.locator("#notice")).to_contain_text("maintenance window for meters")
        [stored] = await DeviceGroups(redis, clock=clock).windows()
        assert stored.group == "meters" and stored.end_ms - stored.start_ms == 7_200_000
        await screenshot(page, "11-maintenance-window")

        await page.fill("#window-group", "a b")  # refused by the API, said on the page
        await page.fill("#window-for", "2h")
        await page.fill("#window-reason", "r")
        await page.click("#window-add")
        await expect(page.locator("#notice")).to_contain_text("path: group: expected")

        await window.get_by_role("button", name="Remove").click()
        await expect(window).to_have_count(0)
        assert await DeviceGroups(redis, clock=clock).windows() == []
    actions = [r.body["action"] async for r in AuditChain(redis).records()
               if r.kind == "operator_action"]
    assert actions == ["maintenance_window_add", "maintenance_window_remove"]


async def a_rollout_in_its_waves(redis: Redis) -> RolloutStore:
    """Ten meters, one canary, waves of three: the canary and one wave done (one failed)."""
    registry = DeviceRegistry(redis, clock=SystemClock())
    for n in range(10):
        await registry.register(f"m-{n}", group="meters")
    plan = RolloutPlan.model_validate({
        "firmware": manifest("1.2.0", PrivateKey.generate()), "group": "meters",
        "canaryPercent": "10%", "soakS": "0s", "waveSize": 3})
    await start_rollout(redis, plan, now_s=SystemClock().time(), rollout_id=ROLLOUT)
    store = RolloutStore(redis, ROLLOUT)
    await store.mark({"m-0": "updated", "m-1": "updated", "m-2": "updated", "m-3": "failed"})
    await store.update_state(stage="waves", wave=1)
    return store


async def test_a_rollouts_progress_is_shown_and_resumed(
        browser: Browser, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALOG_TRUSTED_KEYS", raising=False)  # resumed: not driven here
    monkeypatch.delenv("CATALOG_TRUSTED_KEYS_JSON", raising=False)
    store = await a_rollout_in_its_waves(redis)
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    async with serving(redis, empty_fleet) as (_, base):
        page = await open_page(browser, base, operator, "ota")
        row = page.locator(f'#rollouts tr[data-rollout="{ROLLOUT}"]')
        await expect(row.locator(".stage")).to_have_text("waves")
        await expect(row.locator(".canary")).to_have_text("1/1")
        await expect(row.locator(".waves")).to_have_text("1/3")
        assert await row.locator(".waves progress").get_attribute("max") == "3"
        await expect(row.locator(".updated")).to_have_text("3/10")
        await expect(row.locator(".failed")).to_have_text("1")
        await expect(row.locator(".rolled-back")).to_have_text("0")
        await screenshot(page, "12-ota-waves")

        # The driver gives up and rolls back (here: its store, straight): shown live.
        await store.mark({"m-0": "rolled_back", "m-1": "rolled_back"})
        await store.update_state(stage="rolling_back", reason="wave 1: 25% failed")
        await expect(row.locator(".stage")).to_have_text("rolling_back", timeout=10_000)
        await expect(row.locator(".rolled-back")).to_have_text("2")
        await expect(row.locator(".reason")).to_have_text("wave 1: 25% failed")
        await screenshot(page, "13-ota-rolling-back")

        await row.get_by_role("button", name="Resume").click()
        await expect(page.locator("#notice")).to_have_text(
            f"rollout {ROLLOUT} resumed at stage rolling_back")
    actions = [(r.body["action"], r.body["target"]) async for r in AuditChain(redis).records()
               if r.kind == "operator_action"]
    assert actions == [("ota_resume", ROLLOUT)]


async def test_a_viewer_sees_no_mutating_controls(browser: Browser, redis: Redis) -> None:
    await a_rollout_in_its_waves(redis)
    clock = SystemClock()
    await DeviceGroups(redis, clock=clock).add_window(
        "meters", start_s=clock.time(), end_s=clock.time() + 3600, reason="works",
        created_by="tok_test")
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    async with serving(redis, empty_fleet) as (_, base):
        page = await open_page(browser, base, viewer, "devices")
        window = page.locator("#windows tr", has_text="works")
        await expect(window).to_have_count(1)
        await expect(window.get_by_role("button")).to_have_count(0)
        await expect(page.locator("#window-form")).to_be_hidden()
        await screenshot(page, "14-devices-viewer")

        await page.click('nav a[href="#ota"]')
        row = page.locator(f'#rollouts tr[data-rollout="{ROLLOUT}"]')
        await expect(row.locator(".stage")).to_have_text("waves")
        await expect(row.get_by_role("button")).to_have_count(0)
        await expect(page.locator("#devices-section")).to_be_hidden()


async def test_the_devices_page_says_when_redis_is_down(browser: Browser) -> None:
    with RedisServer() as server:
        redis = create_redis(server.url)
        try:
            async with serving(redis, empty_fleet) as (_, base):
                page = await browser.new_page()
                await page.goto(f"{base}/#devices")
                await expect(page.locator("#device-counts")).to_contain_text("device(s)")
                server.stop()
                await expect(page.locator("#banner")).to_contain_text(
                    "Redis is unavailable", timeout=15_000)
                await screenshot(page, "15-devices-redis-down")
        finally:
            await redis.aclose()


async def test_a_registry_over_the_scan_limit_is_counted_in_part_and_says_so(
        browser: Browser, redis: Redis) -> None:
    """10,050 devices: the page reads 10,000 (ten pages of 1,000) per refresh, says the
    counts are partial, and a group filter counts that group in full."""
    registry = DeviceRegistry(redis, clock=SystemClock())
    await registry.register_many([(f"d-{n:05d}", "bulk", ()) for n in range(10_000)]
                                 + [(f"z-{n}", "late", ()) for n in range(50)])
    viewer = (await tokens_for_every_role(redis))[Role.VIEWER]
    async with serving(redis, empty_fleet) as (_, base):
        page = await open_page(browser, base, viewer, "devices")
        counts = page.locator("#device-counts")
        await expect(counts).to_contain_text("counted the first 10000 of 10050 devices",
                                             timeout=20_000)
        await expect(counts.locator('[data-status="unknown"]')).to_have_text(
            "unknown: 10000")
        await page.fill("#device-group", "late")
        await page.click("#device-filter button")
        await expect(counts).to_contain_text("50 device(s) in late", timeout=20_000)
        await expect(counts.locator('[data-status="unknown"]')).to_have_text("unknown: 50")
