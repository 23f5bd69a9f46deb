"""kill -9 of a ``connector-fleet consume`` process while an ``alarm_trigger`` escalation
waits for its first level: another consumer claims the entry and the escalation
resumes from its record in Redis. No level is raised twice, the next level is
raised, its acknowledgement ends the step, and the entry is acknowledged."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import MosquittoServer, RedisServer
from tests.conftest import REPO_ROOT
from tests.helpers import wait_until
from tests.process import ConnectorProcess
from tests.providers.alarm_devices import AlarmDevices

pytestmark = pytest.mark.slow  # real consumer processes, a kill and a takeover

STREAM = "vitals"
GROUP = "alarms"


def _consumer(name: str, tmp_path: Path, url: str, broker: MosquittoServer) -> ConnectorProcess:
    return ConnectorProcess(
        name, redis_url=url, config=tmp_path / "connectors.json", log=tmp_path / f"{name}.log",
        env={"RULES_PATH": str(tmp_path / "rules.json"), "PYTHONPATH": str(REPO_ROOT),
             "ALARM_MQTT_HOST": "127.0.0.1", "ALARM_MQTT_PORT": str(broker.port)},
        command=("connector-fleet", "consume", "--stream", STREAM, "--group", GROUP,
                 "--consumer", name, "--start-id", "0", "--claim-idle-ms", "1000"))


def test_kill_9_mid_escalation_resumes_on_another_consumer(
        tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer) -> None:
    (tmp_path / "rules.json").write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "desaturation", "match": {"streams": [STREAM], "type": "spo2.low"},
        "steps": [{"id": "alarm", "call": "alarm_trigger", "params": {
            "kind": "clinical", "message": "SpO2 {{ payload.value }}% bed 12",
            "levels": [{"devices": ["bed-12"], "ackTimeoutMs": 3000},
                       {"devices": ["charge-nurse"], "ackTimeoutMs": 60000}]}}]}]}))
    with MosquittoServer() as broker, AlarmDevices(broker) as devices:
        devices.acking["charge-nurse"] = "RN Diaz"
        sync.xadd(STREAM, {"event": orjson.dumps(
            {"type": "spo2.low", "source": "monitor-12", "payload": {"value": 82}})})
        first = _consumer("first", tmp_path, redis_server.url, broker)
        second: ConnectorProcess | None = None
        try:
            wait_until(lambda: len(devices.got("bed-12")) == 1, timeout_s=60)
            first.process.send_signal(signal.SIGKILL)
            first.wait()
            assert devices.got("charge-nurse") == []  # it died while level 1 waited

            second = _consumer("second", tmp_path, redis_server.url, broker)
            wait_until(lambda: sync.xpending(STREAM, GROUP)["pending"] == 0
                       and len(devices.got("charge-nurse")) == 1, timeout_s=60)
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            first.close()
            if second is not None:
                second.close()
        assert len(devices.got("bed-12")) == 1  # level 1 was not raised again
        [raised] = devices.got("charge-nurse")
        assert raised["level"] == 2 and raised["message"] == "SpO2 82% bed 12"
    [key] = sync.keys("fleet:alarm:*")
    assert orjson.loads(sync.get(key))["acked_by"] == "charge-nurse"
    [group] = sync.xinfo_groups(STREAM)
    assert group["lag"] == 0 and group["pending"] == 0
