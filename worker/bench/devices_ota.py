"""``bench devices`` OTA row: one rollout wave over ``devices`` simulated devices
(default 10,000), devices/s, against a bare baseline measured in the same run.

* **ota wave**: ``connector-fleet ota``'s own path (worker.ota.drive_rollout): a
  canary of one device and no soak, then one wave of every other device, each a
  ``device.firmware_update`` call through the signed catalog's seven-step executor
  (precondition read, device permit, manifest check, the command, two postcondition
  reads, audit record) with the rollout's write-ahead state in Redis.
* **bare request/response** (the least work the same job needs): the same devices
  sent one ``firmware_update`` each over the same MQTT channel and concurrency, no
  catalog, permit, state, postcondition or audit.

The devices are ``connector-fleet devices simulate`` in their own process (one MQTT
connection), on a private Mosquitto and a private Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from redis.asyncio import Redis

from framework.core import SystemClock, create_redis, get_logger, read_settings
from framework.testing import MosquittoServer, RedisServer
from framework.trust import Catalog, PrivateKey, TrustStore, parse_definition
from providers.devices import ChannelLimits, DeviceBroker, DeviceChannel
from providers.devices.capabilities import FirmwareManifest
from providers.devices.ota import RolloutPlan, start_rollout
from worker.bench.stats import Row
from worker.ota import drive_rollout

DEFINITIONS = Path(__file__).resolve().parents[2] / "providers" / "devices" / "capabilities" \
    / "definitions"
CONCURRENCY = 200
CLI = str(Path(sys.executable).parent / "connector-fleet")


def measure(params: Row) -> list[Row]:
    """One run: ``{"devices": N}`` → a row per system with ``devices_per_s``."""
    devices = int(params.get("devices", 10_000))
    return asyncio.run(_measure(devices))


async def _measure(devices: int) -> list[Row]:
    with RedisServer() as redis_server, MosquittoServer(max_inflight=1000) as broker:
        url = f"mqtt://127.0.0.1:{broker.port}"
        simulator = await asyncio.create_subprocess_exec(
            CLI, "devices", "simulate", "--count", str(devices + 1), "--broker", url,
            "--heartbeat-interval-s", "3600", "--no-telemetry",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert simulator.stdout is not None
            await asyncio.wait_for(simulator.stdout.readline(), 60)
            bare_s = await _bare(url, devices)
            wave_s = await _wave(redis_server.url, url, devices)
        finally:
            simulator.terminate()
            await asyncio.wait_for(simulator.wait(), 30)
    return [{"system": "ota wave (executor)", "devices": devices,
             "devices_per_s": devices / wave_s},
            {"system": "bare request/response", "devices": devices,
             "devices_per_s": devices / bare_s}]


def _ids(devices: int) -> list[str]:
    width = max(5, len(str(devices)))
    return [f"sim-{index:0{width}d}" for index in range(1, devices + 1)]


async def _bare(url: str, devices: int) -> float:
    async with DeviceChannel(DeviceBroker(broker=url), logger=get_logger(bench="ota-bare"),
                             limits=ChannelLimits(max_in_flight=CONCURRENCY)) as channel:
        started = time.perf_counter()
        await asyncio.gather(*(channel.request(d, "firmware_update", {"version": "1.1.0"},
                                               timeout_s=120) for d in _ids(devices)))
        return time.perf_counter() - started


async def _wave(redis_url: str, url: str, devices: int) -> float:
    catalog_key, firmware_key = PrivateKey.generate(), PrivateKey.generate()
    redis = create_redis(redis_url)
    with _environment({
        "REDIS_URL": redis_url, "DEVICE_BROKER_URL": url,
        "CATALOG_TRUSTED_KEYS_JSON": json.dumps(catalog_key.public().to_json()),
        "FIRMWARE_TRUSTED_KEYS_JSON": json.dumps(firmware_key.public().to_json())}):
        try:
            return await _timed_rollout(redis, catalog_key, firmware_key, devices)
        finally:
            await redis.aclose()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The settings drive_rollout reads, for this run only (a test shares the process)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _timed_rollout(redis: Redis, catalog_key: PrivateKey, firmware_key: PrivateKey,
                         devices: int) -> float:
    catalog = Catalog(redis, TrustStore([catalog_key.public()]), clock=SystemClock(),
                      logger=get_logger(bench="ota"))
    for path in DEFINITIONS.glob("*.json"):
        await catalog.register(parse_definition(path.read_bytes(), source=str(path))
                               .signed_with(catalog_key))
    image = b"bench firmware 1.2.0"
    manifest = FirmwareManifest.model_validate({
        "version": "1.2.0", "url": "https://firmware.example.com/bench-1.2.0.bin",
        "sha256": hashlib.sha256(image).hexdigest(),
        "sizeBytes": len(image)}).signed_with(firmware_key)
    plan = RolloutPlan(firmware=manifest, group="bench", canary_percent=0.001,
                       soak_s=0, wave_size=devices, concurrency=CONCURRENCY)
    ids = ["sim-" + "0" * max(5, len(str(devices))), *_ids(devices)]
    rollout, _ = await start_rollout(redis, plan, now_s=time.time(), devices=ids)
    started = time.perf_counter()
    stage = await drive_rollout(redis, rollout, read_settings())
    elapsed = time.perf_counter() - started
    if stage != "done":
        raise RuntimeError(f"bench devices: the rollout ended {stage}, not done")
    return elapsed
