"""``patient_alert`` against a FHIR R4 server double, through the signed catalog's
pipeline: resources validated before sending, created once per step, the server's
OperationOutcome quoted, and a failed read-back rolled back (entered-in-error)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import CapabilityRegistry, build_executor
from framework.core import DeadLetterError, SystemClock
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import ReplayServer
from providers.fhir import STEP_IDENTIFIER_SYSTEM, FhirActions, FhirSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, sent_key
from tests.execution_deps import execution_deps
from tests.providers.fhir_double import FHIR_TOKEN, FhirDouble
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig

DEFINITION = definition_path("fhir", "patient_alert")
ALERT = {"patient": "Patient/p-0042", "message": "SpO2 below 88% for 60 s",
         "priority": "stat", "category": "vital-signs-alarm", "sender": "Device/oximeter-7"}
KEY = "vitals:1-0:notify:send"


@pytest.fixture
def fhir(replay: ReplayServer) -> Iterator[FhirDouble]:
    yield FhirDouble(replay)


@pytest.fixture
async def client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient()
    yield client
    await client.aclose()


async def rig_for(redis: Redis, fhir: FhirDouble, client: GuardedClient,
                  env: dict[str, str] | None = None) -> Rig:
    actions = FhirActions(FhirSettings(base_url=fhir.base_url), client=client,
                          secrets=EnvSecrets({"FHIR_TOKEN": FHIR_TOKEN} if env is None else env),
                          policy=FAST_POLICY)
    return await safe_rig(redis, [actions.spec()], [DEFINITION])


async def test_a_communication_and_a_flag_are_written_and_read_back(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, fhir, client)
    result = await rig.call("patient_alert", {**ALERT, "resources": ["Communication", "Flag"],
                                              "flagCode": "Desaturation risk"}, key=KEY)
    [communication] = fhir.resources("Communication")
    [flag] = fhir.resources("Flag")
    assert communication["status"] == "completed" and communication["priority"] == "stat"
    assert communication["subject"] == {"reference": "Patient/p-0042"}
    assert communication["payload"] == [{"contentString": ALERT["message"]}]
    assert communication["sender"] == {"reference": "Device/oximeter-7"}
    assert communication["identifier"] == [{"system": STEP_IDENTIFIER_SYSTEM, "value": KEY}]
    assert flag["status"] == "active" and flag["code"] == {"text": "Desaturation risk"}
    assert [(r["resourceType"], r["created"]) for r in result["resources"]] == [
        ("Communication", True), ("Flag", True)]
    [post, *_] = [r for r in fhir.server.requests if r.method == "POST"]
    assert post.headers["content-type"] == "application/fhir+json"
    assert post.headers["if-none-exist"] == f"identifier={STEP_IDENTIFIER_SYSTEM}|{KEY}"
    executed = [r for r in await rig.audit() if r.kind == "executed"]
    assert len(executed) == 1 and executed[0].body["stateAfter"]["written"] is True


BAD_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"patient": "p-0042"}, "patient"),
    ({"patient": "Patient/../admin"}, "patient"),
    ({"message": ""}, "message"),
    ({"priority": "high"}, "priority"),
    ({"resources": []}, "resources"),
    ({"resources": ["Observation"]}, "resources"),
    ({"resources": ["Flag", "Flag"], "flagCode": "x"}, "twice"),
    ({"resources": ["Flag"]}, "flagCode is required"),
    ({"sender": "Patient/p-1"}, "sender"),
    ({"status": "draft"}, "status"),
    ({"baseUrl": "ftp://fhir"}, "baseUrl"),
    ({"token": FHIR_TOKEN}, "token"),
]


@pytest.mark.parametrize(("change", "named"), BAD_PARAMS)
async def test_every_parameter_error_names_the_parameter_and_writes_nothing(
        redis: Redis, fhir: FhirDouble, client: GuardedClient, change: dict[str, Any],
        named: str) -> None:
    rig = await rig_for(redis, fhir, client)
    with pytest.raises(DeadLetterError, match="patient_alert params") as caught:
        await rig.call("patient_alert", {**ALERT, **change})
    assert named in str(caught.value)
    assert FHIR_TOKEN not in str(caught.value)
    assert fhir.server.requests == []


async def test_the_server_s_operation_outcome_is_quoted(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, fhir, client)
    with pytest.raises(DeadLetterError, match="422 .*OperationOutcome: error processing at "
                                              "Communication.subject: Unknown patient") as caught:
        await rig.call("patient_alert", {**ALERT, "patient": "Group/g-1"})
    assert caught.value.attempts == 1 and fhir.resources("Communication") == []


async def test_a_wrong_token_is_not_printed(
        redis: Redis, fhir: FhirDouble, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-fhir-token-999"
    rig = await rig_for(redis, fhir, client, env={"FHIR_TOKEN": wrong})
    with pytest.raises(DeadLetterError, match="Invalid access token") as caught:
        await rig.call("patient_alert", ALERT)
    printed = str(caught.value) + str(await rig.audit()) + capsys.readouterr().err
    assert wrong not in printed and FHIR_TOKEN not in printed


async def test_a_failing_server_is_retried_then_the_breaker_opens(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    fhir.failing_creates = 100  # the read-before is answered, every create fails
    rig = await rig_for(redis, fhir, client)
    with pytest.raises(CallFailedError, match="after 3 attempts.*503.*maintenance"):
        await rig.call("patient_alert", ALERT)
    with pytest.raises(CircuitOpenError):
        await rig.call("patient_alert", ALERT)
    assert fhir.failing_creates == 97 and fhir.resources("Communication") == []


async def test_a_rate_limit_is_retried(redis: Redis, fhir: FhirDouble,
                                       client: GuardedClient) -> None:
    rig = await rig_for(redis, fhir, client)
    fhir.rate_limited = 1
    await rig.call("patient_alert", ALERT)
    assert len(fhir.resources("Communication")) == 1


@pytest.mark.slow  # the read-back is polled for its 2 s timeout
async def test_a_resource_not_read_back_is_rolled_back_as_entered_in_error(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    fhir.lose_flags = True  # the Flag is acknowledged but never stored
    rig = await rig_for(redis, fhir, client)
    with pytest.raises(RolledBackError):
        await rig.call("patient_alert", {**ALERT, "resources": ["Communication", "Flag"],
                                         "flagCode": "Desaturation risk"}, key=KEY)
    [communication] = fhir.resources("Communication")
    assert communication["status"] == "entered-in-error"
    assert communication["meta"]["versionId"] == "2"
    records = await rig.audit()
    assert [r.kind for r in records] == ["failed", "rollback"]
    assert records[0].body["stage"] == "postcondition"
    assert records[1].body["ok"] is True
    assert records[1].body["rollbackParams"]["status"] == "entered-in-error"
    [alert] = await rig.alerts()
    assert "patient_alert" in alert["event"]


async def test_a_redelivered_step_writes_nothing_again(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, fhir, client)
    await rig.call("patient_alert", ALERT, key=KEY)
    again = await rig.call("patient_alert", ALERT, key=KEY)
    assert again["executed"] is False and again["outcome"] == "precondition_failed"
    assert len(fhir.resources("Communication")) == 1


async def test_the_conditional_create_keeps_one_resource_when_the_ledger_is_lost(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    actions = FhirActions(FhirSettings(base_url=fhir.base_url), client=client,
                          secrets=EnvSecrets({"FHIR_TOKEN": FHIR_TOKEN}), policy=FAST_POLICY)
    registry = CapabilityRegistry()
    registry.register(actions.spec())
    executor = build_executor(registry, execution_deps(redis, SystemClock()))
    rig = Rig(redis, executor)  # unsigned: no read-before, the handler runs each time
    first = await rig.call("patient_alert", ALERT, key=KEY)
    await redis.delete(sent_key(KEY))  # a crash before the ledger write
    second = await rig.call("patient_alert", ALERT, key=KEY)
    assert len(fhir.resources("Communication")) == 1
    assert first["resources"][0]["created"] is True
    assert second["resources"][0] == {**first["resources"][0], "created": False}


async def test_no_server_configured_is_named(redis: Redis, fhir: FhirDouble,
                                             client: GuardedClient) -> None:
    actions = FhirActions(FhirSettings(), client=client, policy=FAST_POLICY)
    rig = await safe_rig(redis, [actions.spec()], [DEFINITION])
    with pytest.raises(DeadLetterError, match="FHIR_BASE_URL"):
        await rig.call("patient_alert", ALERT)


async def test_a_server_outside_allow_hosts_is_refused(
        redis: Redis, fhir: FhirDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, fhir, client)
    with pytest.raises(DeadLetterError, match="target refused"):
        await rig.call("patient_alert", ALERT, hosts=None)
    assert fhir.server.requests == []
