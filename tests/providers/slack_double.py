"""A Slack double on the replay server: ``chat.postMessage`` and one incoming webhook,
with the Web API's real request and answer shapes (Bearer token; HTTP 200 with
``{"ok": false, "error": ...}`` for failures; 429 ``ratelimited`` with
``Retry-After``) and the webhook's (plain ``ok``; error codes as text bodies with a
4xx status)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import orjson

from framework.testing import RecordedRequest, ReplayServer, Reply

BOT_TOKEN = "xoxb-1111-2222-test-token"
WEBHOOK_PATH = "/services/T0FLEET/B0ALERTS/hookSecret12345"
CHANNELS = {"C0ALERTS", "C0NOTS"}  # C0NOTS: answers ok without a ts (a broken answer)


class SlackDouble:
    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.api_base = f"{server.url}/api"
        self.webhook_url = f"{server.url}{WEBHOOK_PATH}"
        self.posted: list[dict[str, Any]] = []
        self.rate_limited = 0  # the next N calls answer 429
        self.failing = 0  # the next N calls answer 500
        self.retry_after_s = 2
        self._ts = itertools.count(100)
        self._lock = threading.Lock()
        server.route("/api/chat.postMessage", self._post_message)
        server.route(WEBHOOK_PATH, self._webhook)

    def _post_message(self, request: RecordedRequest) -> Reply:
        refused = self._refused()
        if refused is not None:
            return refused
        auth = request.headers.get("authorization")
        if auth is None:
            return Reply(body={"ok": False, "error": "not_authed"})
        if auth != f"Bearer {BOT_TOKEN}":
            return Reply(body={"ok": False, "error": "invalid_auth"})
        body = orjson.loads(request.body)
        channel = body.get("channel")
        if channel == "C0ARCHIVED":
            return Reply(body={"ok": False, "error": "is_archived"})
        if channel not in CHANNELS:
            return Reply(body={"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return Reply(body={"ok": False, "error": "no_text"})
        with self._lock:
            self.posted.append(body)
            ts = f"1764756000.{next(self._ts):06d}"
        if channel == "C0NOTS":
            return Reply(body={"ok": True, "channel": channel})
        message = {"type": "message", "text": body.get("text", ""), "ts": ts, "bot_id": "B0BOT"}
        if "thread_ts" in body:
            message["thread_ts"] = body["thread_ts"]
        return Reply(body={"ok": True, "channel": channel, "ts": ts, "message": message})

    def _webhook(self, request: RecordedRequest) -> Reply:
        refused = self._refused()
        if refused is not None:
            return refused
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return Reply(400, "invalid_payload", content_type="text/html")
        if not body.get("text") and not body.get("blocks"):
            return Reply(400, "no_text", content_type="text/html")
        with self._lock:
            self.posted.append(body)
        return Reply(200, "ok", content_type="text/html")

    def _refused(self) -> Reply | None:
        with self._lock:
            if self.rate_limited:
                self.rate_limited -= 1
                return Reply(429, {"ok": False, "error": "ratelimited"},
                             headers={"Retry-After": str(self.retry_after_s)})
            if self.failing:
                self.failing -= 1
                return Reply(500, {"ok": False, "error": "internal_error"})
        return None
