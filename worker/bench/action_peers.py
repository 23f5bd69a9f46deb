"""The targets of the network capabilities in ``bench consume``, each a process of
its own so that it does not share the consumer's interpreter:

* ``smtp``: aiosmtpd accepting every message (counted, not kept);
* ``slack``: an aiohttp server answering ``POST /api/chat.postMessage`` as Slack does
  (Bearer token checked, ``{"ok": true, "channel", "ts"}``);
* ``modbus``: a pymodbus slave (``pump_control``'s pump: a coil and a register).

``python -m worker.bench.action_peers smtp|slack|modbus PORT``; prints ``ready`` once it
listens; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from typing import Any

import orjson
from aiohttp import web

BENCH_SLACK_TOKEN = "xoxb-bench-token"


class _CountingHandler:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 2.0.0 queued"


async def _serve_smtp(port: int, stop: asyncio.Event) -> None:
    from aiosmtpd.smtp import SMTP  # a dev dependency: only the bench's peer needs it

    handler = _CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", port)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


async def _serve_slack(port: int, stop: asyncio.Event) -> None:
    stamps = itertools.count(1)

    async def post_message(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BENCH_SLACK_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        body = orjson.loads(await request.read())
        answer = {"ok": True, "channel": body.get("channel"),
                  "ts": f"1764756000.{next(stamps):06d}"}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/chat.postMessage", post_message)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


async def _serve_modbus(port: int, stop: asyncio.Event) -> None:
    # pymodbus's own server: the pump's run coil and speed register (pump_control).
    from providers.modbus.register_simulator import RegisterSimulator

    async with RegisterSimulator(port=port):
        print("ready", flush=True)
        await stop.wait()


async def main(kind: str, port: int) -> int:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = {"smtp": _serve_smtp, "slack": _serve_slack, "modbus": _serve_modbus}.get(kind)
    if serve is None:
        print(f"action_peers: unknown peer {kind!r} (smtp, slack or modbus)", file=sys.stderr)
        return 2
    await serve(port, stop)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
