"""``/api/v1/ota/rollouts`` over real HTTP on a real Redis: roles, a started rollout
(recorded, audited, listed, shown), named errors, and a rollout driven to the end by
the ops process over the signed catalog against simulated devices on Mosquitto."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from framework.core import SystemClock, get_logger
from framework.testing import MosquittoServer
from framework.trust.audit.chain import AuditChain
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog, parse_definition
from providers.devices import DeviceSimulator, SimulatorOptions
from tests.ops.api_client import empty_fleet, serving, tokens_for_every_role
from tests.providers.devices.conftest import broker_of
from tests.providers.devices.rig import definition, manifest
from worker.ops import Role

ROLLOUTS = "/api/v1/ota/rollouts"
FIRMWARE_KEY = PrivateKey.generate()


def body(**extra: object) -> dict[str, object]:
    return {"firmware": manifest("1.2.0", FIRMWARE_KEY), "group": "meters",
            "canaryPercent": "10%", "soakS": "0s", **extra}


async def test_rollouts_are_started_by_operators_listed_shown_and_audited(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CATALOG_TRUSTED_KEYS", raising=False)
    monkeypatch.delenv("CATALOG_TRUSTED_KEYS_JSON", raising=False)  # not driven: recorded
    await redis.sadd("fleet:{devices}:group:meters", "m-1", "m-2", "m-3")
    tokens = await tokens_for_every_role(redis)
    async with serving(redis, empty_fleet) as (api, _):
        denied = await api.call("POST", ROLLOUTS, tokens[Role.VIEWER], json_body=body())
        assert denied.status_code == 403
        started = await api.call("POST", ROLLOUTS, tokens[Role.OPERATOR],
                                 json_body=body(id="r-api"))
        assert started.status_code == 201, started.text
        assert started.json()["devices"] == 3 and started.json()["canary"]["devices"] == 1
        again = await api.call("POST", ROLLOUTS, tokens[Role.OPERATOR],
                               json_body=body(id="r-api"))
        assert again.status_code == 409
        bad = await api.call("POST", ROLLOUTS, tokens[Role.OPERATOR],
                             json_body=body(canaryPercent="lots"))
        assert bad.status_code == 400
        assert "canaryPercent" in bad.json()["error"] and "'lots'" in bad.json()["error"]
        shown = await api.call("GET", ROLLOUTS + "/{id}", tokens[Role.VIEWER], id="r-api")
        assert shown.json()["stage"] == "canary"
        listed = await api.call("GET", ROLLOUTS, tokens[Role.VIEWER])
        assert [r["id"] for r in listed.json()["rollouts"]] == ["r-api"]
        missing = await api.call("GET", ROLLOUTS + "/{id}", tokens[Role.VIEWER], id="nope")
        assert missing.status_code == 404
    actions = [(r.body["action"], r.body["target"]) async for r in AuditChain(redis).records()
               if r.kind == "operator_action"]
    assert actions == [("ota_start", "r-api")]


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    with MosquittoServer() as broker:
        yield broker


@pytest.mark.slow
async def test_a_rollout_started_through_the_api_is_driven_to_the_end(
        redis: Redis, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog_key = PrivateKey.generate()
    catalog = Catalog(redis, TrustStore([catalog_key.public()]), clock=SystemClock(),
                      logger=get_logger(test="ota-api"))
    for name in ("device.firmware_update_v1.2.0.json", "device.reboot_v1.0.0.json"):
        await catalog.register(parse_definition(definition(name, fast=False), source=name)
                               .signed_with(catalog_key))
    monkeypatch.setenv("CATALOG_TRUSTED_KEYS_JSON", json.dumps(catalog_key.public().to_json()))
    monkeypatch.setenv("FIRMWARE_TRUSTED_KEYS_JSON", json.dumps(FIRMWARE_KEY.public().to_json()))
    monkeypatch.setenv("DEVICE_BROKER_URL", f"mqtt://127.0.0.1:{mosquitto.port}")
    tokens = await tokens_for_every_role(redis)
    async with (DeviceSimulator(broker_of(mosquitto), SimulatorOptions(count=6),
                                logger=get_logger(test="ota-api")) as fleet,
                serving(redis, empty_fleet) as (api, _)):
        await redis.sadd("fleet:{devices}:group:meters", *fleet.devices)
        started = await api.call("POST", ROLLOUTS, tokens[Role.OPERATOR],
                                 json_body=body(id="r-drive", waveSize=2))
        assert started.status_code == 201, started.text
        stage = ""
        async with asyncio.timeout(60):
            while stage != "done":  # polled over HTTP, as an operator's console does
                await asyncio.sleep(0.1)
                stage = (await api.call("GET", ROLLOUTS + "/{id}", tokens[Role.VIEWER],
                                        id="r-drive")).json()["stage"]
        assert all(d.firmware_version == "1.2.0" and d.firmware_updates == 1
                   for d in fleet.devices.values())
