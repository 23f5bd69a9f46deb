"""``sms_send`` through Twilio and OVHcloud doubles (their real request, signature and
error shapes), through the signed catalog's pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import DeadLetterError
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import ReplayServer
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from providers.sms import OvhSettings, SmsActions, SmsSettings, TwilioSettings
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.sms_doubles import (
    AUTH_TOKEN,
    INVALID_NUMBER,
    OVH_APP_SECRET,
    OVH_CONSUMER_KEY,
    OVH_ENV,
    OVH_INVALID,
    OVH_SERVICE,
    TWILIO_ENV,
    TWILIO_NUMBER,
    OvhDouble,
    TwilioDouble,
)

DEFINITION = definition_path("sms", "sms_send")
TWILIO_SMS = {"provider": "twilio", "to": ["+33601020304", "+33601020305"],
              "from": TWILIO_NUMBER, "body": "Pressure high on line 1: 9.2 bar"}
OVH_SMS = {"provider": "ovh", "to": ["+33601020304", "+33601020305"],
           "from": "FLEET", "body": "Pressure high on line 1: 9.2 bar",
           "serviceName": OVH_SERVICE}


@pytest.fixture
async def client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient()
    yield client
    await client.aclose()


async def rig_for(redis: Redis, server: ReplayServer, client: GuardedClient,
                  env: dict[str, str] | None = None) -> Rig:
    settings = SmsSettings(twilio=TwilioSettings(api_base=server.url),
                           ovh=OvhSettings(api_base=server.url))
    actions = SmsActions(settings, client=client,
                         secrets=EnvSecrets({**TWILIO_ENV, **OVH_ENV} if env is None else env),
                         policy=FAST_POLICY)
    return await safe_rig(redis, [actions.spec()], [DEFINITION])


async def test_twilio_sends_one_message_per_recipient(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    twilio = TwilioDouble(replay)
    rig = await rig_for(redis, replay, client)
    result = await rig.call("sms_send", TWILIO_SMS)
    assert [m["To"] for m in twilio.sent] == TWILIO_SMS["to"]
    assert {m["From"] for m in twilio.sent} == {TWILIO_NUMBER}
    assert {m["Body"] for m in twilio.sent} == {TWILIO_SMS["body"]}
    assert [m["to"] for m in result["messages"]] == TWILIO_SMS["to"]
    assert all(m["id"].startswith("SM") and m["status"] == "queued"
               for m in result["messages"])
    assert await rig.kinds() == ["executed"]


async def test_twilio_with_a_messaging_service(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    twilio = TwilioDouble(replay)
    rig = await rig_for(redis, replay, client)
    service = "MG" + "a" * 32
    params = {**TWILIO_SMS, "messagingServiceSid": service, "to": ["+33601020304"]}
    del params["from"]
    await rig.call("sms_send", params)
    assert twilio.sent == [{"To": "+33601020304", "Body": TWILIO_SMS["body"],
                            "MessagingServiceSid": service}]


async def test_ovh_sends_one_signed_job_on_ovh_s_clock(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    ovh = OvhDouble(replay, clock_offset_s=3600)  # OVH's clock an hour off ours
    rig = await rig_for(redis, replay, client)
    result = await rig.call("sms_send", OVH_SMS)
    [job] = ovh.jobs
    assert job["receivers"] == OVH_SMS["to"] and job["message"] == OVH_SMS["body"]
    assert job["sender"] == "FLEET"
    assert result["provider"] == "ovh" and result["invalid"] == []
    assert [m["to"] for m in result["messages"]] == OVH_SMS["to"]


async def test_an_ovh_signature_made_with_another_secret_is_refused_and_not_printed(
        redis: Redis, replay: ReplayServer, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    ovh = OvhDouble(replay)
    wrong = "wrongOvhSecret000"
    rig = await rig_for(redis, replay, client,
                        {**OVH_ENV, "OVH_APPLICATION_SECRET": wrong})
    with pytest.raises(DeadLetterError, match="INVALID_SIGNATURE: Invalid signature") as caught:
        await rig.call("sms_send", OVH_SMS)
    assert ovh.jobs == [] and caught.value.attempts == 1
    printed = str(caught.value) + str(await rig.audit()) + capsys.readouterr().err
    for secret in (wrong, OVH_APP_SECRET, OVH_CONSUMER_KEY):
        assert secret not in printed


async def test_a_bad_twilio_token_is_refused_and_not_printed(
        redis: Redis, replay: ReplayServer, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    TwilioDouble(replay)
    wrong = "wrong-twilio-token-0000"
    rig = await rig_for(redis, replay, client, {**TWILIO_ENV, "TWILIO_AUTH_TOKEN": wrong})
    with pytest.raises(DeadLetterError, match="code 20003: Authenticate") as caught:
        await rig.call("sms_send", TWILIO_SMS)
    printed = str(caught.value) + str(await rig.audit()) + capsys.readouterr().err
    assert wrong not in printed and AUTH_TOKEN not in printed


async def test_twilio_s_error_code_is_quoted_and_not_retried(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    twilio = TwilioDouble(replay)
    rig = await rig_for(redis, replay, client)
    with pytest.raises(DeadLetterError, match="code 21211: The 'To' number") as caught:
        await rig.call("sms_send", {**TWILIO_SMS, "to": [INVALID_NUMBER]})
    assert caught.value.attempts == 1 and twilio.sent == []


BAD_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"provider": "sinch"}, "provider"),
    ({"to": []}, "to"),
    ({"to": ["0601020304"]}, "to"),
    ({"to": ["+33601020304", "+33601020304"]}, "listed twice"),
    ({"body": ""}, "body"),
    ({"body": "x" * 1601}, "body"),
    ({"from": "A VERY LONG SENDER"}, "from"),
    ({"from": None}, "exactly one of from, messagingServiceSid"),
    ({"messagingServiceSid": "MG123"}, "messagingServiceSid"),
    ({"serviceName": OVH_SERVICE}, "serviceName is for provider ovh"),
    ({"authToken": AUTH_TOKEN}, "authToken"),
]


@pytest.mark.parametrize(("change", "named"), BAD_PARAMS)
async def test_every_parameter_error_names_the_parameter_and_sends_nothing(
        redis: Redis, replay: ReplayServer, client: GuardedClient, change: dict[str, Any],
        named: str) -> None:
    rig = await rig_for(redis, replay, client)
    params = {k: v for k, v in {**TWILIO_SMS, **change}.items() if v is not None}
    with pytest.raises(DeadLetterError, match="sms_send params") as caught:
        await rig.call("sms_send", params)
    assert named in str(caught.value) and caught.value.attempts == 1
    assert AUTH_TOKEN not in str(caught.value)
    assert replay.requests == []


async def test_ovh_without_a_service_is_named(redis: Redis, replay: ReplayServer,
                                              client: GuardedClient) -> None:
    rig = await rig_for(redis, replay, client)
    params = {k: v for k, v in OVH_SMS.items() if k != "serviceName"}
    with pytest.raises(DeadLetterError, match="OVH_SMS_SERVICE"):
        await rig.call("sms_send", params)


async def test_missing_twilio_credentials_are_named(redis: Redis, replay: ReplayServer,
                                                    client: GuardedClient) -> None:
    rig = await rig_for(redis, replay, client, env={})
    with pytest.raises(DeadLetterError, match="TWILIO_ACCOUNT_SID"):
        await rig.call("sms_send", TWILIO_SMS)


@pytest.mark.parametrize("provider", ["twilio", "ovh"])
async def test_a_failing_provider_is_retried_then_the_breaker_opens(
        redis: Redis, replay: ReplayServer, client: GuardedClient, provider: str) -> None:
    double = TwilioDouble(replay) if provider == "twilio" else OvhDouble(replay)
    double.failing = 100
    rig = await rig_for(redis, replay, client)
    params = TWILIO_SMS if provider == "twilio" else OVH_SMS
    with pytest.raises(CallFailedError, match="after 3 attempts.*503"):
        await rig.call("sms_send", params)
    with pytest.raises(CircuitOpenError):
        await rig.call("sms_send", params)
    assert double.failing == 97


@pytest.mark.parametrize("provider", ["twilio", "ovh"])
async def test_a_rate_limit_is_retried_and_sends_once(
        redis: Redis, replay: ReplayServer, client: GuardedClient, provider: str) -> None:
    double = TwilioDouble(replay) if provider == "twilio" else OvhDouble(replay)
    double.rate_limited = 1
    rig = await rig_for(redis, replay, client)
    await rig.call("sms_send", TWILIO_SMS if provider == "twilio" else OVH_SMS)
    sent = double.sent if isinstance(double, TwilioDouble) else double.jobs
    assert len(sent) == (2 if provider == "twilio" else 1)


async def test_an_invalid_ovh_receiver_fails_the_postcondition_recorded_and_alerted(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    ovh = OvhDouble(replay)
    rig = await rig_for(redis, replay, client)
    with pytest.raises(RolledBackError):
        await rig.call("sms_send", {**OVH_SMS, "to": ["+33601020304", OVH_INVALID]})
    assert len(ovh.jobs) == 1
    [failed] = [r for r in await rig.audit() if r.kind == "failed"]
    assert failed.body["stage"] == "postcondition"
    [alert] = await rig.alerts()
    assert "sms_send" in alert["event"]


async def test_a_twilio_retry_after_a_partial_failure_sends_only_the_rest(
        redis: Redis, replay: ReplayServer, client: GuardedClient) -> None:
    twilio = TwilioDouble(replay)
    rig = await rig_for(redis, replay, client)
    params = {**TWILIO_SMS, "to": ["+33601020304", INVALID_NUMBER]}
    with pytest.raises(DeadLetterError, match="21211"):
        await rig.call("sms_send", params, key="alerts:3-0:notify:sms")
    # The dead letter is replayed once the number is fixed: the first recipient,
    # already reached, is not sent to again.
    fixed = {**TWILIO_SMS, "to": ["+33601020304", "+33601020309"]}
    result = await rig.call("sms_send", fixed, key="alerts:3-0:notify:sms")
    assert [m["To"] for m in twilio.sent] == ["+33601020304", "+33601020309"]
    assert result["messages"][0]["duplicate"] is True


@pytest.mark.parametrize("provider", ["twilio", "ovh"])
async def test_a_redelivered_step_does_not_send_again(
        redis: Redis, replay: ReplayServer, client: GuardedClient, provider: str) -> None:
    double = TwilioDouble(replay) if provider == "twilio" else OvhDouble(replay)
    rig = await rig_for(redis, replay, client)
    params = TWILIO_SMS if provider == "twilio" else OVH_SMS
    first = await rig.call("sms_send", params, key="alerts:5-0:notify:sms")
    again = await rig.call("sms_send", params, key="alerts:5-0:notify:sms")
    sent = double.sent if isinstance(double, TwilioDouble) else double.jobs
    assert len(sent) == (2 if provider == "twilio" else 1)
    assert [m["id"] for m in again["messages"]] == [m["id"] for m in first["messages"]]
