"""The operator console's static files, and the console and API behind an ingress
that serves them under a path prefix (a real proxy on 127.0.0.1 that strips it)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import web
from redis.asyncio import Redis

from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from worker.ops import OpsServer, Role

PREFIX = "/fleet"


async def test_the_console_is_served_with_a_strict_content_policy(redis: Redis) -> None:
    async with serving(redis, empty_fleet) as (api, _):
        page = await api.client.get("/")
        script = await api.client.get("/console/console.js")
        style = await api.client.get("/console/console.css")
        charts = await api.client.get("/console/lag-charts.js")
        devices = await api.client.get("/console/devices.js")
        other = await api.client.get("/console/..%2Fhttp_api.py")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["Content-Security-Policy"] == "default-src 'self'"
    assert "<script" in page.text and "onclick" not in page.text
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text  # data is never parsed as HTML
    assert style.status_code == 200
    assert charts.status_code == 200 and "createElementNS" in charts.text
    assert "innerHTML" not in charts.text
    assert devices.status_code == 200 and "textContent" in devices.text
    assert "innerHTML" not in devices.text
    assert other.status_code == 404 and other.json()["error"].startswith("no console file")


@asynccontextmanager
async def ingress(upstream: str) -> AsyncIterator[str]:
    """A reverse proxy serving ``upstream`` under PREFIX, as an ingress does: the prefix
    is stripped, the original host is passed in X-Forwarded-Host."""
    client = httpx.AsyncClient(base_url=upstream, timeout=10)

    async def forward(request: web.Request) -> web.Response:
        path = request.path_qs.removeprefix(PREFIX) or "/"
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "origin", "accept")}
        headers["X-Forwarded-Host"] = request.host
        answer = await client.request(request.method, path, headers=headers,
                                      content=await request.read())
        return web.Response(body=answer.content, status=answer.status_code,
                            content_type=answer.headers["content-type"].split(";")[0])

    app = web.Application()
    app.router.add_route("*", PREFIX + "/{tail:.*}", forward)
    server = OpsServer(app, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()
        await client.aclose()


async def test_console_and_api_work_behind_a_path_prefix(redis: Redis) -> None:
    operator = (await tokens_for_every_role(redis))[Role.OPERATOR]
    async with (serving(redis, empty_fleet) as (_, upstream), ingress(upstream) as outside,
                httpx.AsyncClient(timeout=10) as browser):
        page_url = f"{outside}{PREFIX}/"
        page = await browser.get(page_url)
        assets = re.findall(r'(?:src|href)="([^"#][^"]*)"', page.text)  # not #pages
        assert sorted(assets) == ["console/console.css", "console/console.js",
                                  "console/devices.js", "console/lag-charts.js"]
        for asset in assets:  # relative: resolved against the prefixed page
            assert (await browser.get(str(httpx.URL(page_url).join(asset)))
                    ).status_code == 200
        # The script builds API URLs relative to the page too.
        script = (await browser.get(f"{page_url}console/console.js")).text
        assert "new URL(`api/v1/${path}`, document.baseURI)" in script
        listed = await browser.get(f"{page_url}api/v1/connectors")
        injected = await browser.post(
            f"{page_url}api/v1/streams/s/events",
            json={"fields": {"a": "b"}},
            headers={"Authorization": f"Bearer {operator}", "Origin": outside})
    assert listed.status_code == 200 and listed.json() == {"connectors": []}
    assert injected.status_code == 201, injected.text
    assert await redis.xlen("s") == 1
