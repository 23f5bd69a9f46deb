"""Secrets never printed by a consumer: a ``${VAR}`` value in rules.json (in a
call's URL query under a name that says nothing, in a Cookie header) is redacted
in the consumer's log, even when the call's target fails and its URL ends up in
the error."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer, ReplayServer, Reply
from tests.helpers import wait_until
from tests.process import ConnectorProcess

SECRETS = {"HOOK_TOKEN": "hook Mk5token&y=2", "HOOK_COOKIE": "Mk6cookie-sid"}
MARKERS = ("Mk5token", "Mk6cookie")


@pytest.mark.slow
def test_a_failing_call_never_logs_a_secret_of_the_rules(
    tmp_path: Path, replay: ReplayServer, redis_server: RedisServer, sync: sync_redis.Redis,
) -> None:
    # A hostile target: it fails every call, so the URL ends up in error messages.
    replay.route("/hook", lambda _: Reply(status=500, body={"error": "down"}))
    rules = tmp_path / "rules.json"
    rules.write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "notify", "match": {"stream": "signals"},
        "steps": [{"id": "hook", "call": "http_call", "allowHosts": ["127.0.0.1"], "params": {
            "method": "GET", "url": replay.url + "/hook?sig=${HOOK_TOKEN}",
            "headers": {"Cookie": "sid=${HOOK_COOKIE}"}}}]}]}))
    consumer = ConnectorProcess(
        "consumer", redis_url=redis_server.url, config=tmp_path / "connectors.json",
        log=tmp_path / "consumer.log", env={"RULES_PATH": str(rules), **SECRETS},
        command=("connector-fleet", "consume", "--group", "g", "--consumer", "c",
                 "--start-id", "0"))
    try:
        sync.xadd("signals", {"connector": "x", "type": "T", "item_id": "1", "version": "v",
                              "payload": "{}"})
        wait_until(lambda: "/hook" in consumer.log_path.read_text())
        consumer.signal(signal.SIGTERM)
        consumer.wait(30)
    finally:
        consumer.close()

    text = consumer.log_path.read_text()
    assert "/hook?sig=***" in text  # a name that says nothing: redacted by origin
    assert [m for m in MARKERS if m in text] == [], text[-3000:]
    assert replay.requests[0].headers["cookie"] == f"sid={SECRETS['HOOK_COOKIE']}"
