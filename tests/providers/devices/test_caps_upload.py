"""``data.compress_upload`` through the seven-step executor: a simulated device on a
real Mosquitto, a collector on 127.0.0.1 (a local HTTP server that stores what is
PUT). Success; a collector that fails (the batch stays on the device and the next
call uploads the same one: nothing lost); timeout; a device that does not drop the
uploaded batch (postcondition, audited and alerted: an upload cannot be unsent);
refused preconditions; a target the step does not allow."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from framework.core import HostPolicy
from framework.core.errors import CallFailedError, DeadLetterError, RolledBackError
from framework.testing import MosquittoServer, RecordedRequest, ReplayServer, Reply
from providers.devices import DeviceSimulator
from tests.providers.devices.caps_rig import CapsRig, caps_rig
from tests.providers.devices.conftest import broker_of

PATH = "/ingest/readings"


@pytest.fixture
async def rig(redis: Redis, mosquitto: MosquittoServer) -> AsyncIterator[CapsRig]:
    made = await caps_rig(redis, broker_of(mosquitto))
    yield made
    await made.close()


@pytest.fixture
def collector() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        server.route(PATH, Reply(201, {"stored": True}))
        yield server


def upload(collector: ReplayServer, device_id: str, **extra: object) -> dict[str, object]:
    return {"deviceId": device_id, "url": collector.url + PATH, **extra}


def allowed(collector: ReplayServer) -> HostPolicy:
    return HostPolicy.of([f"127.0.0.1:{collector.port}"])


async def test_the_buffer_is_compressed_uploaded_and_dropped_on_the_device(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    device = simulator.devices["sim-00001"]
    result = await rig.run("data.compress_upload", upload(collector, "sim-00001"),
                           hosts=allowed(collector))
    [put] = collector.requests_to(PATH)
    assert put.method == "PUT" and put.headers["content-encoding"] == "gzip"
    lines = gzip.decompress(put.body).decode().splitlines()
    assert [json.loads(line)["value"] for line in lines] == [20.0 + i / 10 for i in range(10)]
    assert put.headers["idempotency-key"] == f"sim-00001:{result['batchId']}"
    assert (result["count"], result["status"]) == (10, 201)
    assert (device.extras.buffer, device.extras.pending) == ([], {})
    assert await rig.kinds() == ["executed"]


@pytest.mark.slow
async def test_a_failing_collector_loses_nothing(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    collector.route(PATH, Reply(503, {"error": "busy"}), Reply(503, {"error": "busy"}),
                    Reply(201, {}))
    device = simulator.devices["sim-00002"]
    with pytest.raises(CallFailedError, match=r"HTTP 503 for batch .* \(kept on the device\)"):
        await rig.run("data.compress_upload", upload(collector, "sim-00002"),
                      hosts=allowed(collector))
    assert len(device.extras.pending) == 1  # not dropped
    await rig.run("data.compress_upload", upload(collector, "sim-00002"),
                  hosts=allowed(collector))
    first, _, stored = collector.requests_to(PATH)
    assert first.body == stored.body  # the same batch, uploaded again
    assert first.headers["idempotency-key"] == stored.headers["idempotency-key"]
    assert device.extras.pending == {}


@pytest.mark.slow
async def test_a_device_that_never_hands_its_batch_out_times_out(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    simulator.devices["sim-00003"].ignored_commands.add("data_compress")
    with pytest.raises(CallFailedError, match="DeviceTimeoutError: device sim-00003"):
        await rig.run("data.compress_upload", upload(collector, "sim-00003", timeoutS=0.3),
                      hosts=allowed(collector))
    assert collector.requests_to(PATH) == []
    assert await rig.kinds() == ["failed"]
    assert await rig.alerts()


@pytest.mark.slow
async def test_a_device_that_keeps_the_uploaded_batch_fails_the_postcondition(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    simulator.devices["sim-00004"].no_effect.add("data_ack")
    with pytest.raises(RolledBackError, match="state.pending_batches == 0.*rollback none"):
        await rig.run("data.compress_upload", upload(collector, "sim-00004"),
                      hosts=allowed(collector))
    [failed] = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    [alert] = await rig.alerts()
    assert "capability.failure" in json.dumps(alert)


async def test_refused_preconditions_nothing_to_upload_or_a_silent_device(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    simulator.devices["sim-00005"].extras.buffer = []
    empty = await rig.run("data.compress_upload", upload(collector, "sim-00005"),
                          hosts=allowed(collector))
    assert empty["condition"] == "state.buffered > 0 or state.pending_batches > 0"
    simulator.silence("sim-00006", 60)
    silent = await rig.run("data.compress_upload", upload(collector, "sim-00006"),
                           hosts=allowed(collector))
    assert silent["condition"] == "state.reachable == true"
    assert await rig.kinds() == ["precondition_failed", "precondition_failed"]
    assert collector.requests_to(PATH) == []


async def test_a_target_the_step_does_not_allow_is_refused_and_the_data_kept(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    with pytest.raises(DeadLetterError, match="target refused"):
        await rig.run("data.compress_upload", upload(collector, "sim-00007"),
                      hosts=HostPolicy.of(["collector.example.com"]))
    assert collector.requests_to(PATH) == []
    device = simulator.devices["sim-00007"]
    assert sum(len(batch) for batch in device.extras.pending.values()) == 10  # kept


async def test_a_batch_over_max_bytes_is_never_uploaded(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    def check(request: RecordedRequest) -> Reply:
        raise AssertionError(f"uploaded: {request.path}")
    collector.route(PATH, check)
    device = simulator.devices["sim-00008"]
    device.extras.pending["b1"] = [1.0]
    device.extras.buffer = []
    with pytest.raises(DeadLetterError, match=r"InvalidBatchError: .*over maxBytes \(10\)"):
        await rig.run("data.compress_upload", upload(collector, "sim-00008", maxBytes=10),
                      hosts=allowed(collector))
    assert device.extras.pending == {"b1": [1.0]}  # kept for a later, larger call


@pytest.mark.slow
async def test_a_collector_that_never_answers_times_out_and_the_batch_is_kept(
        rig: CapsRig, simulator: DeviceSimulator, collector: ReplayServer) -> None:
    collector.route(PATH, Reply(201, {}, delay_s=3.0))
    with pytest.raises(CallFailedError, match=r"did not answer within 0.5 s .*kept on the device"):
        await rig.run("data.compress_upload", upload(collector, "sim-00009", timeoutS=0.5),
                      hosts=allowed(collector))
    assert len(simulator.devices["sim-00009"].extras.pending) == 1
