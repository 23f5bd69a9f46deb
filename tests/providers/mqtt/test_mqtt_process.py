"""``connector-fleet run-all`` runs an ``mqtt-source`` next to other connectors, and
``config check`` names a bad ``providerConfig`` field before anything runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import MosquittoServer, RedisServer
from tests.chaos.test_mqtt_kill import Publisher, mqtt_entry
from tests.process import BIN, ConnectorProcess, write_config

pytestmark = pytest.mark.slow  # real processes


def test_run_all_carries_an_mqtt_source(
    tmp_path: Path, redis_server: RedisServer, mosquitto: MosquittoServer,
) -> None:
    config = write_config(tmp_path / "c.json", mqtt_entry(mosquitto.port))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    fleet = ConnectorProcess("fleet", redis_url=redis_server.url, config=config,
                             log=tmp_path / "fleet.log",
                             command=("connector-fleet", "run-all", "--in-process"))
    try:
        fleet.wait_for("push_source_started", timeout_s=60)
        publisher = Publisher(mosquitto.port, 20, per_second=100)
        publisher.start()
        publisher.join(timeout_s=30)
        deadline = time.monotonic() + 30
        while client.xlen("raw-input-signals") < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        fleet.signal(signal.SIGTERM)
        assert fleet.wait(timeout_s=30) == 0
    finally:
        fleet.close()
    values = [orjson.loads(f["payload"])["value"] for _, f in client.xrange("raw-input-signals")]
    assert values == list(range(20))
    client.close()


def test_config_check_names_a_bad_mqtt_field(tmp_path: Path) -> None:
    entry = mqtt_entry(1883)
    entry["providerConfig"]["topic"] = "plant/#/temp"
    config = write_config(tmp_path / "c.json", entry)
    result = subprocess.run([str(BIN / "connector-fleet"), "config", "check"],
                            env={**os.environ, "CONNECTORS_CONFIG_PATH": str(config)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "mqtt-source connector plant-mqtt" in result.stderr + result.stdout
    assert "'#' must be a whole level and the last" in result.stderr + result.stdout
