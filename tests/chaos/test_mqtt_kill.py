"""``connector-run`` of an ``mqtt-source`` killed with SIGKILL again and again while
messages flow: every message reaches the stream (at least once); with a publisher
id (``dedupeField``), or at QoS 2, none is appended twice. A kill between the
receipt and the append of a QoS 2 message, and a broker restart mid-run."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from framework.testing import MosquittoServer, RedisServer
from tests.process import ConnectorProcess, write_config

pytestmark = pytest.mark.slow  # real processes, kills and restarts: seconds per test

NAME = "plant-mqtt"
KILLS = 8
# The broker lets this many QoS 1 messages be unacknowledged at once (mosquitto's
# max_inflight_messages): a kill redelivers at most these.
IN_FLIGHT = 20


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    with MosquittoServer(max_inflight=IN_FLIGHT) as server:
        yield server


class Publisher:
    """Publishes readings 0, 1, 2... at ``qos`` from its own thread at a steady pace:
    ``count`` of them, or with ``count=None`` until :meth:`finish`."""

    def __init__(self, port: int, count: int | None, per_second: float, qos: int = 1) -> None:
        self._port = port
        self._qos = qos
        self._count = count
        self._gap_s = 1 / per_second
        self.sent = 0
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-publisher")
        client.connect("127.0.0.1", self._port)
        client.loop_start()
        seq = 0
        while seq != self._count and not self._finish.is_set():
            self._publish(client, orjson.dumps({"value": seq, "seq": seq}))
            seq += 1
            self.sent = seq
            time.sleep(self._gap_s)
        client.disconnect()
        client.loop_stop()

    def _publish(self, client: mqtt.Client, payload: bytes) -> None:
        """Until the broker acknowledged it (it may be restarting: then again)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = client.publish("plant/line1/temp", payload, qos=self._qos)
            try:
                info.wait_for_publish(timeout=2)
            except RuntimeError:  # not connected
                time.sleep(0.1)
                continue
            if info.is_published():
                return
        raise AssertionError(f"could not publish {payload!r}")

    def join_after_start(self, timeout_s: float) -> None:
        self.start()
        self.join(timeout_s)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert self._count is None or self.sent == self._count, (
            f"published only {self.sent} of {self._count}")

    def finish(self) -> int:
        """Stop publishing; how many were published."""
        self._finish.set()
        self.join(timeout_s=60)
        return self.sent


def mqtt_entry(port: int, **provider: Any) -> dict[str, Any]:
    return {"name": NAME, "type": "mqtt-source", "pollIntervalMs": 500, "requestTimeoutMs": 3000,
            "leaseTtlSeconds": 2,
            "providerConfig": {"broker": f"mqtt://127.0.0.1:{port}", "topic": "plant/+/temp",
                               "qos": 1, **provider}}


def seqs_in_stream(client: sync_redis.Redis) -> Counter[int]:
    return Counter(orjson.loads(fields["payload"])["value"]
                   for _, fields in client.xrange("raw-input-signals"))


def run_until_all_arrived(tmp_path: Path, redis_server: RedisServer, config: Path,
                          client: sync_redis.Redis, label: str, messages: int) -> None:
    final = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                             log=tmp_path / f"{label}.log")
    try:
        final.wait_for("push_source_started")
        deadline = time.monotonic() + 60
        while len(seqs_in_stream(client)) < messages and time.monotonic() < deadline:
            time.sleep(0.2)
        final.signal(signal.SIGTERM)
        assert final.wait(timeout_s=30) == 0
    finally:
        final.close()


@pytest.mark.parametrize(("dedupe", "qos"), [(False, 1), (True, 1), (False, 2)],
                         ids=["at-least-once", "publisher-ids", "qos2-exactly-once"])
def test_sigkill_storm_while_messages_flow_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, broker: MosquittoServer, dedupe: bool, qos: int,
) -> None:
    provider: dict[str, Any] = {"dedupeField": "seq"} if dedupe else {}
    config = write_config(tmp_path / "c.json", mqtt_entry(broker.port, qos=qos, **provider))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    rng = random.Random(20261203)
    publisher = Publisher(broker.port, None, per_second=100, qos=qos)

    for round_number in range(KILLS):
        worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                  log=tmp_path / f"run-{round_number}.log")
        try:
            worker.wait_for("push_source_started")
            if round_number == 0:
                publisher.start()  # the session exists: nothing is sent before it
            time.sleep(rng.uniform(0.1, 0.8))
            worker.signal(signal.SIGKILL)  # while messages flow: the publisher never waits
            worker.wait()
        finally:
            worker.close()
        client.delete(f"lease:{NAME}")  # as an operator would; the lease would expire anyway
    messages = publisher.finish()
    assert messages > 100
    run_until_all_arrived(tmp_path, redis_server, config, client, "final", messages)

    seen = seqs_in_stream(client)
    assert sorted(seen) == list(range(messages))  # nothing lost
    duplicates = sum(n - 1 for n in seen.values())
    print(f"{duplicates} duplicates after {KILLS} kills")
    if dedupe or qos == 2:
        assert duplicates == 0
    else:  # each kill may redeliver what was appended but not yet acknowledged
        assert duplicates <= KILLS * IN_FLIGHT
    client.close()


def test_a_broker_restart_mid_run_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, broker: MosquittoServer,
) -> None:
    config = write_config(tmp_path / "c.json", mqtt_entry(broker.port, dedupeField="seq"))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "run.log")
    try:
        worker.wait_for("push_source_started")
        publisher = Publisher(broker.port, 300, per_second=200)
        publisher.start()
        time.sleep(0.5)
        broker.stop()  # the publisher's in-flight message waits for its reconnect
        time.sleep(1.0)
        broker.start()
        worker.wait_for("mqtt_connected", connection=3, timeout_s=30)
        publisher.join(timeout_s=60)
        deadline = time.monotonic() + 30
        while len(seqs_in_stream(client)) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout_s=30) == 0
    finally:
        worker.close()
    seen = seqs_in_stream(client)
    assert sorted(seen) == list(range(300))
    client.close()


def test_a_standby_takes_the_session_over_when_the_leader_is_killed(
    tmp_path: Path, redis_server: RedisServer, broker: MosquittoServer,
) -> None:
    """Both instances use the same client id: the standby must not connect (it would
    take the leader's session away) until it holds the lease."""
    config = write_config(tmp_path / "c.json", mqtt_entry(broker.port, dedupeField="seq"))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    leader = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "leader.log")
    standby: ConnectorProcess | None = None
    try:
        leader.wait_for("push_source_started")
        standby = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                                   log=tmp_path / "standby.log")
        standby.wait_for("standby")
        publisher = Publisher(broker.port, None, per_second=100)
        publisher.start()
        time.sleep(1.5)
        assert not [e for e in standby.events() if e.get("event") == "mqtt_connected"]
        leader.signal(signal.SIGKILL)
        leader.wait()
        standby.wait_for("push_source_started", timeout_s=30)
        time.sleep(1.0)
        messages = publisher.finish()
        deadline = time.monotonic() + 30
        while len(seqs_in_stream(client)) < messages and time.monotonic() < deadline:
            time.sleep(0.2)
        standby.signal(signal.SIGTERM)
        assert standby.wait(timeout_s=30) == 0
    finally:
        leader.close()
        if standby is not None:
            standby.close()
    seen = seqs_in_stream(client)
    assert sorted(seen) == list(range(messages))
    assert sum(n - 1 for n in seen.values()) == 0
    client.close()


def test_a_kill_between_the_receipt_and_the_append_of_a_qos_2_message_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, broker: MosquittoServer,
) -> None:
    """Redis pauses writes, so the append of the received messages hangs; the
    process is killed then: the broker never heard PUBREC and delivers them again."""
    config = write_config(tmp_path / "c.json", mqtt_entry(broker.port, qos=2))
    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    worker = ConnectorProcess(NAME, redis_url=redis_server.url, config=config,
                              log=tmp_path / "killed.log")
    try:
        worker.wait_for("push_source_started")
        client.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
        try:
            Publisher(broker.port, 30, per_second=200, qos=2).join_after_start(timeout_s=30)
            time.sleep(0.5)  # received by the connector, its append waiting for Redis
            worker.signal(signal.SIGKILL)
            worker.wait()
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
    finally:
        worker.close()
    assert client.xlen("raw-input-signals") == 0
    client.delete(f"lease:{NAME}")
    run_until_all_arrived(tmp_path, redis_server, config, client, "final", 30)
    seen = seqs_in_stream(client)
    assert sorted(seen) == list(range(30))  # each once: exactly once
    client.close()
