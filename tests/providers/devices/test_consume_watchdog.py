"""The real ``connector-fleet consume`` with an absence rule: it records heartbeats and
runs the watchdog itself (the lease holder sweeps); a meter that stops sending gets
one ticket, one that keeps sending none; SIGTERM releases the watchdog's lease."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from framework.testing import RedisServer, free_port
from providers.devices import DeviceKeys
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.process import ConnectorProcess, write_config

pytestmark = pytest.mark.slow  # a real process and a real 1 s absence


def reading(meter: str) -> dict[str, str]:
    return {"event": json.dumps({"type": "meter.reading", "source": "gateway",
                                 "payload": {"meterId": meter, "kwh": 1}})}


def test_consume_runs_the_watchdog_for_absence_rules(
        tmp_path: Path, redis_server: RedisServer, sync: sync_redis.Redis) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": 1, "rules": [{
        "name": "meter-silent",
        "absence": {"match": {"stream": "meters"}, "device": "payload.meterId", "for": "1s"},
        "steps": [{"emit": {"stream": "tickets", "event": {
            "type": "ticket.open", "source": "rules",
            "payload": {"meter": "{{ payload.deviceId }}"}}}}]}]}))
    port = free_port()
    consumer = ConnectorProcess(
        "consume", redis_url=redis_server.url, config=write_config(tmp_path / "c.json"),
        log=tmp_path / "consume.log",
        env={"RULES_PATH": str(rules), "PYTHONPATH": str(REPO_ROOT)},
        command=("connector-fleet", "consume", "--group", "rules", "--consumer", "c1",
                 "--metrics-port", str(port)))
    quiet = threading.Event()

    def keep_talking() -> None:
        while not quiet.wait(0.2):
            sync.xadd("meters", reading("m-2"))

    talking = threading.Thread(target=keep_talking, daemon=True)
    try:
        consumer.wait_for("consumer_started", timeout_s=30)
        consumer.wait_for("device_watchdog_lease_taken", timeout_s=30)
        sync.xadd("meters", reading("m-1"))
        talking.start()  # m-2 keeps talking, every 0.2 s, until the consumer has stopped
        wait_until(lambda: sync.xlen("tickets") >= 1, timeout_s=20)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "device_absences_total 1.0" in metrics
        assert "device_watchdog_lease_held 1.0" in metrics
        assert "device_absence_detection_delay_seconds_count 1.0" in metrics
        consumer.signal(signal.SIGTERM)
        assert consumer.wait(30) == 0
    finally:
        quiet.set()
        if talking.is_alive():
            talking.join(5)
        consumer.close()
    tickets = [json.loads(f["event"])["payload"]["meter"] for _, f in sync.xrange("tickets")]
    assert tickets == ["m-1"]
    assert sync.hget(DeviceKeys().device("m-2"), "status") == "online"
    assert sync.get(DeviceKeys().watchdog_lease) is None
