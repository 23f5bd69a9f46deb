"""The irrigation close survives a kill -9 of the consumer that opened the valve: a
real ``connector-fleet consume`` process opens a zone for a few seconds and is
killed right after; another consumer process, started afterwards, closes the
valve when it is due (not before, and within its sweep interval and a margin for
the loaded machine), and the redelivered event does not open it again."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from framework.testing import RedisServer
from providers.modbus.register_simulator import RegisterSimulator
from providers.plant import CLOSES_KEY
from tests.chaos.test_modbus_kill import DeviceThread
from tests.helpers import wait_until
from tests.process import ConnectorProcess, write_config
from tests.providers.plant_rig import ZONE_COILS, plant_config

pytestmark = pytest.mark.slow  # real processes, a kill and a restart

STREAM = "irrigation-requests"
GROUP = "irrigators"
COIL = ZONE_COILS["Z-02"]
DURATION_S = 6
# How late the surviving consumer may close: its sweep interval (100 ms) plus room
# for a loaded 2-core machine to schedule it.
LATE_MARGIN_MS = 2500


def consumer(name: str, tmp_path: Path, url: str, device: RegisterSimulator) -> ConnectorProcess:
    plant = plant_config(device, sweepIntervalMs=100, closeLeaseMs=2000)
    return ConnectorProcess(
        name, redis_url=url, config=write_config(tmp_path / "connectors.json"),
        log=tmp_path / f"{name}.log",
        env={"PLANT_CONFIG_JSON": orjson.dumps(plant).decode()},
        command=("connector-fleet", "consume", "--rules", str(tmp_path / "rules.json"),
                 "--group", GROUP, "--consumer", name, "--start-id", "0",
                 "--claim-idle-ms", "1000"))


def redis_now_ms(client: sync_redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_consumer_killed_after_opening_a_zone_still_closes_it_on_time(
    tmp_path: Path, sync: sync_redis.Redis, redis_server: RedisServer,
) -> None:
    (tmp_path / "rules.json").write_bytes(orjson.dumps({"version": 1, "rules": [{
        "name": "water", "match": {"stream": STREAM, "type": "irrigate"},
        "steps": [{"id": "open", "call": "irrigation_control", "params": {
            "zoneId": "{{ payload.zone }}", "action": "open",
            "durationS": "{{ payload.seconds }}"}}]}]}))
    with DeviceThread() as device:
        first = consumer("first", tmp_path, redis_server.url, device)
        second: ConnectorProcess | None = None
        try:
            first.wait_for("rules_loaded", timeout_s=60)
            sync.xadd(STREAM, {"event": orjson.dumps({
                "type": "irrigate", "source": "scheduler",
                "payload": {"zone": "Z-02", "seconds": DURATION_S}}).decode()})
            wait_until(lambda: device.values["coil"][COIL] == 1, timeout_s=30)
            first.process.send_signal(signal.SIGKILL)
            first.wait()
            due_ms = int(sync.zscore(CLOSES_KEY, "Z-02"))
            assert redis_now_ms(sync) < due_ms  # killed well before its close was due

            second = consumer("second", tmp_path, redis_server.url, device)
            wait_until(lambda: device.values["coil"][COIL] == 0, timeout_s=DURATION_S + 30)
            closed_ms = redis_now_ms(sync)
            # The entry the first left pending is claimed and settled by the second.
            wait_until(lambda: sync.xpending(STREAM, GROUP)["pending"] == 0, timeout_s=30)
            time.sleep(0.5)  # a late re-open would show by now
            second.signal(signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            first.close()
            if second is not None:
                second.close()

    assert due_ms <= closed_ms <= due_ms + LATE_MARGIN_MS, (closed_ms - due_ms)
    assert device.values["coil"][COIL] == 0
    assert sync.zcard(CLOSES_KEY) == 0
    commands = [values[0] for table, address, values in device.writes
                if (table, address) == ("coil", COIL)]
    # Opened (again at most once, by the redelivery while its close was pending), then
    # closed once, by the survivor, and never opened after.
    assert commands[-1] == 0 and commands.count(0) == 1 and 1 <= commands.count(1) <= 2
    [closed] = [e for e in second.events() if e.get("event") == "irrigation_closed"]
    assert closed["zone"] == "Z-02" and closed["due_ms"] == due_ms


def test_a_bad_plant_configuration_stops_the_consumer_at_start_naming_it(
    tmp_path: Path, redis_server: RedisServer,
) -> None:
    (tmp_path / "rules.json").write_bytes(orjson.dumps({"version": 1, "rules": []}))
    process = ConnectorProcess(
        "bad-plant", redis_url=redis_server.url,
        config=write_config(tmp_path / "connectors.json"), log=tmp_path / "bad.log",
        env={"PLANT_CONFIG_JSON": '{"zones": {"Z-01": {"device": "nowhere", '
                                  '"valve": {"coil": 1}, "maxDurationS": 60}}}'},
        command=("connector-fleet", "consume", "--rules", str(tmp_path / "rules.json"),
                 "--stream", STREAM))
    try:
        assert process.wait(60) == 78
    finally:
        process.close()
    log = (tmp_path / "bad.log").read_text()
    assert "PLANT_CONFIG_JSON: field (root): Value error, zone Z-01: device 'nowhere'" in log
