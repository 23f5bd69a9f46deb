"""The baseline of ``bench webhook``: a bare aiohttp handler that reads the body and
does one XADD per request, with nothing else (no auth, no checks, no batching, no
fencing). ``python -m worker.bench.webhook_bare PORT REDIS_URL`` serves until killed."""

from __future__ import annotations

import sys

from aiohttp import web
from redis.asyncio import Redis

STREAM = "bench-bare-webhook"


def bare_app(redis: Redis) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        await redis.xadd(STREAM, {"payload": body}, maxlen=1_000_000, approximate=True)
        return web.json_response({"status": "saved"})

    app = web.Application()
    app.router.add_post("/webhook", receive)
    return app


def main(argv: list[str]) -> None:
    port, url = int(argv[0]), argv[1]
    web.run_app(bare_app(Redis.from_url(url)), host="127.0.0.1", port=port, print=None,
                access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
