"""``connector-fleet bench field``: the field actions' rate against a bare loop of the
same library doing the same exchange.

* ``drone_waypoint``: missions of ``waypoints`` items uploaded to the MAVLink vehicle
  emulator (``framework.testing.MavlinkVehicle``) by the capability's handler
  (parameters checked, the sent ledger read and written in Redis, retransmission
  timers armed), against a bare pymavlink loop: the same datagrams (MISSION_COUNT,
  one MISSION_ITEM_INT per request, until MISSION_ACK) on one UDP socket per mission.
* ``alarm_trigger``: alarms raised on one device of a private Mosquitto, acknowledged
  by it at once, by the capability's handler (its escalation record and the sent
  ledger in Redis), against a bare paho-mqtt loop doing the same MQTT work: one
  connection per alarm, subscribe to the ack topic, publish at QoS 1, wait for the
  acknowledgement, clear it.

Each run is a fresh process (``worker.bench.repeat``); the report gives median and
range of the runs with the load average at the start of each.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymavlink.dialects.v20 import common as mavlink
from redis.asyncio import Redis

from framework.consuming import CallContext
from framework.core import SystemClock, get_logger
from framework.testing import MavlinkVehicle, MosquittoServer, RedisServer
from providers.alarm import AlarmActions, AlarmSettings
from providers.mavlink import DroneActions, VehicleAddress
from worker.bench.repeat import repeat_in_fresh_processes
from worker.bench.stats import Row, summarize

_KEY_FIELDS = ("capability",)


def measure(params: Row) -> list[Row]:
    with RedisServer() as server:
        return asyncio.run(_measure(params, server.url))


async def _measure(params: Row, url: str) -> list[Row]:
    redis = Redis.from_url(url)
    try:
        drone = await _drone_rates(redis, int(params["missions"]), int(params["waypoints"]))
        with MosquittoServer() as broker, _AckingDevice(broker.port):
            alarm = await _alarm_rates(redis, broker.port, int(params["alarms"]))
    finally:
        await redis.aclose()
    return [{"capability": "drone_waypoint", "unit": "missions/s", **drone},
            {"capability": "alarm_trigger", "unit": "alarms/s", **alarm}]


def _context(redis: Redis, key: str) -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=SystemClock(),
                       logger=get_logger(bench="field"))


async def _drone_rates(redis: Redis, missions: int, waypoints: int) -> Row:
    plan = {"vehicle": "uav-1", "waypoints": [
        {"lat": 48.85 + i * 1e-4, "lon": 2.29, "altM": 30} for i in range(waypoints)]}
    async with MavlinkVehicle() as vehicle:
        address = VehicleAddress(host=vehicle.host, port=vehicle.port)
        actions = DroneActions({"uav-1": address})
        run = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for n in range(missions):
            await actions.upload(plan, _context(redis, f"bench:{run}:{n}"))
        rate = missions / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(missions):
            await _bare_upload(vehicle.port, waypoints)
        bare_rate = missions / (time.perf_counter() - started)
        assert vehicle.uploads == 2 * missions, "the vehicle did not accept every mission"
    return {"rate": rate, "bare_rate": bare_rate, "ratio": rate / bare_rate}


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


async def _bare_upload(port: int, waypoints: int) -> None:
    codec = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
    inbox = _Inbox()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: inbox, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(codec.mission_count_encode(1, 1, waypoints).pack(codec))
        while True:
            data = await asyncio.wait_for(inbox.queue.get(), 5)
            for message in codec.parse_buffer(data) or ():
                if message.get_type() == "MISSION_ACK":
                    return
                if message.get_type() == "MISSION_REQUEST_INT":
                    transport.sendto(codec.mission_item_int_encode(
                        1, 1, message.seq, mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT,
                        mavlink.MAV_CMD_NAV_WAYPOINT, 0, 1, 0, 0, 0, 0,
                        round((48.85 + message.seq * 1e-4) * 1e7), round(2.29 * 1e7), 30,
                    ).pack(codec))
    finally:
        transport.close()


class _AckingDevice:
    """One device (``bench-device``) that acknowledges every alarm at once, retained."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-device")
        self._client.on_message = self._on_message
        self._ready = threading.Event()
        self._client.on_subscribe = lambda *args: self._ready.set()

    def __enter__(self) -> _AckingDevice:
        self._client.connect("127.0.0.1", self._port)
        self._client.subscribe("alarms/devices/+/alarm", qos=1)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("bench field: the alarm device could not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        alarm = orjson.loads(message.payload)
        if alarm.get("operation", "raise") == "raise":
            client.publish(alarm["ackTopic"], orjson.dumps(
                {"alarmId": alarm["alarmId"], "device": "bench-device"}), qos=1, retain=True)


async def _alarm_rates(redis: Redis, port: int, alarms: int) -> Row:
    actions = AlarmActions(AlarmSettings(host="127.0.0.1", port=port))
    params = {"message": "bench", "levels": [{"devices": ["bench-device"],
                                              "ackTimeoutMs": 5000}]}
    run = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    for n in range(alarms):
        result = await actions.trigger(params, _context(redis, f"bench:{run}:{n}"))
        assert result["acked"], "bench field: an alarm was not acknowledged"
    rate = alarms / (time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(alarms):
        await asyncio.to_thread(_bare_alarm, port, f"bare{run}{n}")
    bare_rate = alarms / (time.perf_counter() - started)
    return {"rate": rate, "bare_rate": bare_rate, "ratio": rate / bare_rate}


def _bare_alarm(port: int, alarm_id: str) -> None:
    acked = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bare-{alarm_id}")
    client.on_message = lambda c, u, m: acked.set() if m.payload else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        ack_topic = f"alarms/acks/{alarm_id}"
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe(ack_topic, qos=1)
        if not subscribed.wait(5):
            raise RuntimeError("bench field: the bare loop could not subscribe to its acks")
        client.publish("alarms/devices/bench-device/alarm", orjson.dumps(
            {"alarmId": alarm_id, "operation": "raise", "ackTopic": ack_topic}),
            qos=1).wait_for_publish(5)
        if not acked.wait(5):
            raise RuntimeError("bench field: the bare loop's alarm was not acknowledged")
        client.publish(ack_topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def run_field_bench(params: Row, runs: int) -> int:
    repeated = repeat_in_fresh_processes("field", params, runs, timeout_s=900)
    print(repeated.describe())
    print("through the capability's handler, and through a bare loop of the same library "
          "doing the same exchange")
    print(f"{'capability':>15} | {'unit':>11} | {'capability':>22} | {'bare loop':>22} | "
          f"{'ratio':>17}")
    for row in summarize(repeated.runs, _KEY_FIELDS):
        unit = "missions/s" if row.key["capability"] == "drone_waypoint" else "alarms/s"
        print(f"{row.key['capability']!s:>15} | {unit:>11} | {row.cell('rate'):>22} | "
              f"{row.cell('bare_rate'):>22} | {row.cell('ratio', '.2f'):>17}")
    sys.stdout.flush()
    return 0
