"""``connector-fleet ota``: the real command line drives a rollout over the signed
catalog against simulated devices, is killed (SIGKILL) during the fleet wave, and
``ota resume`` finishes it without updating any device twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from framework.core import SystemClock, get_logger
from framework.testing import MosquittoServer, RedisServer
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from providers.devices import DeviceSimulator, SimulatorOptions
from tests.cli import INSTALLED_CLI
from tests.conftest import REPO_ROOT
from tests.providers.devices.conftest import broker_of
from tests.providers.devices.rig import definition, manifest
from worker.cli import run_fleet_command


async def cli(*argv: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        INSTALLED_CLI, *argv, env=env, cwd=REPO_ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


@pytest.mark.slow
async def test_a_killed_driver_is_resumed_without_updating_any_device_twice(
        redis: Redis, redis_server: RedisServer, mosquitto: MosquittoServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    catalog_key, firmware_key = PrivateKey.generate(), PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([catalog_key.public()]), clock=SystemClock(),
                      logger=get_logger(test="ota-cli"))
    for name in ("device.firmware_update_v1.2.0.json", "device.reboot_v1.0.0.json"):
        await catalog.register(parse_definition(definition(name, fast=False), source=name)
                               .signed_with(catalog_key))
    firmware = tmp_path / "firmware-1.2.0.json"
    firmware.write_text(json.dumps(manifest("1.2.0", firmware_key)))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "REDIS_URL": redis_server.url,
           "CATALOG_TRUSTED_KEYS_JSON": json.dumps(catalog_key.public().to_json()),
           "FIRMWARE_TRUSTED_KEYS_JSON": json.dumps(firmware_key.public().to_json()),
           "DEVICE_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}", "OTA_LEASE_TTL_S": "1"}
    async with DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=40),
                               logger=get_logger(test="ota-cli")) as fleet:
        await redis.sadd("fleet:{devices}:group:meters", *fleet.devices)
        driving = await cli("ota", "start", "--firmware", str(firmware), "--group", "meters",
                            "--canary", "5%", "--soak", "0s", "--wave-size", "100",
                            "--concurrency", "2", "--id", "r-kill", env=env)
        try:
            async with asyncio.timeout(60):
                while sum(d.firmware_updates for d in fleet.devices.values()) < 10:
                    assert driving.returncode is None, await driving.stderr.read()  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)
        finally:
            driving.send_signal(signal.SIGKILL)
            await driving.communicate()
        assert sum(d.firmware_updates for d in fleet.devices.values()) < 40
        await asyncio.sleep(1.2)  # the dead driver's lease expires

        resumed = await cli("ota", "resume", "r-kill", env=env)
        out, err = await asyncio.wait_for(resumed.communicate(), 120)
        assert resumed.returncode == 0, (out + err).decode()[-3000:]
        assert b"rollout r-kill: done" in out
        assert {d: device.firmware_updates for d, device in fleet.devices.items()} == (
            dict.fromkeys(fleet.devices, 1))

    monkeypatch.setenv("REDIS_URL", redis_server.url)
    capsys.readouterr()
    assert await asyncio.to_thread(run_fleet_command, ["ota", "status", "r-kill", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stage"] == "done" and status["states"]["updated"] == 40


async def test_ota_start_names_a_bad_manifest_and_plan(
        redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    firmware = tmp_path / "firmware.json"
    firmware.write_text(json.dumps({"version": "1.2.0", "url": "http://insecure/x.bin"}))
    code = await asyncio.to_thread(run_fleet_command, [
        "ota", "start", "--firmware", str(firmware), "--group", "meters", "--canary", "lots"])
    assert code == 64
    err = capsys.readouterr().err
    assert "firmware.url: String should match pattern '^https://'" in err
    assert "firmware.sha256: Field required" in err
    assert "canaryPercent: Value error, 'lots' is not a percentage" in err


async def test_ota_start_detached_then_status_as_a_table(
        redis: Redis, redis_server: RedisServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    await redis.sadd("fleet:{devices}:group:meters", "m-1", "m-2", "m-3")
    firmware = tmp_path / "firmware.json"
    firmware.write_text(json.dumps(manifest("1.2.0", PrivateKey.generate())))
    code = await asyncio.to_thread(run_fleet_command, [
        "ota", "start", "--firmware", str(firmware), "--group", "meters", "--canary", "34%",
        "--id", "r-d", "--detach"])
    assert code == 0
    assert capsys.readouterr().out == "rollout r-d: 3 devices, version 1.2.0\n"
    assert await asyncio.to_thread(run_fleet_command, ["ota", "status"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["rollout", "stage", "version", "devices", "canary", "waves",
                              "updated", "failed", "rolled", "back"]
    assert row.split() == ["r-d", "canary", "1.2.0", "3", "2", "(0", "unhealthy)", "0/1",
                           "0", "0", "0"]
