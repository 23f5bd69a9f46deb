"""``alarm_trigger`` against a private Mosquitto and alarm devices on it: acknowledged
at the first level, escalated when not, never acknowledged, bad acknowledgements
ignored, an escalation that survives a crashed consumer, every parameter and
setting error, and through the signed catalog's pipeline: a call that succeeds, a
broker that is gone (retries, then the breaker opens), an alarm nobody acknowledged
(the rollback withdraws it, audited and alerted) and a redelivered event that does
not raise the alarm twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import CallContext, CallPolicy
from framework.consuming.capabilities.breaker import BreakerPolicy
from framework.core import (
    HostPolicy,
    PermanentSourceError,
    RefusedTargetError,
    SystemClock,
    TransientSourceError,
    get_logger,
)
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import MosquittoServer, free_port
from providers.alarm import AlarmActions, AlarmSettings
from providers.outbox import EnvSecrets
from tests.providers.alarm_devices import AlarmDevices
from tests.providers.messaging_rig import definition_path, safe_rig
from tests.providers.redelivery import deliver_twice

DEFINITION = definition_path("alarm", "alarm_trigger")
FAST = CallPolicy(timeout_s=10.0, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.05,
                  breaker=BreakerPolicy(failure_threshold=3, window_s=60, cooldown_s=60))


@pytest.fixture
def broker() -> Iterator[MosquittoServer]:
    with MosquittoServer() as server:
        yield server


@pytest.fixture
def devices(broker: MosquittoServer) -> Iterator[AlarmDevices]:
    with AlarmDevices(broker) as emulated:
        yield emulated


def settings(port: int, **changes: Any) -> AlarmSettings:
    return AlarmSettings(host="127.0.0.1", port=port, timeout_ms=2000, **changes)


def actions(broker: MosquittoServer | int, policy: CallPolicy | None = None) -> AlarmActions:
    port = broker if isinstance(broker, int) else broker.port
    return AlarmActions(settings(port), policy=policy)


def context(redis: Redis, key: str = "vitals:1-0:r:alarm",
            hosts: HostPolicy | None = None) -> CallContext:
    return CallContext(idempotency_key=key, event={}, redis=redis, clock=SystemClock(),
                       logger=get_logger(test="alarm"), hosts=hosts)


def alarm(*timeouts_ms: int, **changes: Any) -> dict[str, Any]:
    """One device per level: ``bed-12`` (level 1), ``pager-1``, ``pager-2``..."""
    names = ["bed-12", *[f"pager-{n}" for n in range(1, len(timeouts_ms))]]
    return {"kind": "clinical", "severity": "critical", "message": "SpO2 82% bed 12",
            "source": "ward-3/bed-12",
            "levels": [{"devices": [name], "ackTimeoutMs": ms}
                       for name, ms in zip(names, timeouts_ms, strict=True)], **changes}


async def test_an_alarm_acknowledged_at_the_first_level(
        redis: Redis, devices: AlarmDevices) -> None:
    devices.acking["bed-12"] = "RN Diaz"

    result = await actions(devices.broker).trigger(alarm(5000, 5000), context(redis))

    assert result["acked"] is True and result["duplicate"] is False
    assert (result["ackedBy"], result["by"], result["level"], result["levels"]) == (
        "bed-12", "RN Diaz", 1, 2)
    [raised] = devices.got("bed-12")
    assert raised["alarmId"] == result["alarmId"] and raised["level"] == 1
    assert (raised["kind"], raised["severity"], raised["message"], raised["ackTopic"]) == (
        "clinical", "critical", "SpO2 82% bed 12", f"alarms/acks/{result['alarmId']}")
    assert devices.got("pager-1") == []


async def test_an_unacknowledged_level_escalates_to_the_next(
        redis: Redis, devices: AlarmDevices) -> None:
    devices.acking["pager-1"] = "charge nurse"

    result = await actions(devices.broker).trigger(alarm(200, 5000), context(redis))

    assert (result["acked"], result["ackedBy"], result["level"]) == (True, "pager-1", 2)
    assert len(devices.got("bed-12")) == 1 and len(devices.got("pager-1")) == 1
    assert devices.got("pager-1")[0]["level"] == 2


async def test_an_alarm_nobody_acknowledges_ends_unacknowledged_at_the_last_level(
        redis: Redis, devices: AlarmDevices) -> None:
    result = await actions(devices.broker).trigger(alarm(100, 100, 100), context(redis))
    assert (result["acked"], result["ackedBy"], result["level"]) == (False, None, 3)
    assert [len(devices.got(d)) for d in ("bed-12", "pager-1", "pager-2")] == [1, 1, 1]


async def test_bad_acknowledgements_are_ignored_and_the_escalation_goes_on(
        redis: Redis, devices: AlarmDevices) -> None:
    capability = actions(devices.broker)
    task = asyncio.create_task(capability.trigger(alarm(600, 3000), context(redis)))
    await devices.wait_for("bed-12")
    [raised] = devices.got("bed-12")
    devices.send_raw(raised["ackTopic"], b"not json")
    devices.send_raw(raised["ackTopic"], b"x" * 5000)
    devices.acknowledge({**raised, "alarmId": "someone-else"}, "bed-12")
    devices.acknowledge(raised, "pager-1")  # not alarmed yet at level 1
    await devices.wait_for("pager-1")
    devices.acknowledge(devices.got("pager-1")[0], "pager-1", by="Dr Okafor")
    result = await task
    assert (result["ackedBy"], result["by"], result["level"]) == ("pager-1", "Dr Okafor", 2)


async def test_the_escalation_resumes_after_a_crash_without_raising_a_level_twice(
        redis: Redis, devices: AlarmDevices) -> None:
    crashed = asyncio.create_task(actions(devices.broker).trigger(
        alarm(800, 800, 3000), context(redis)))
    await devices.wait_for("bed-12")
    await asyncio.sleep(0.05)  # the level is recorded right after its publish
    crashed.cancel()  # the consumer dies while level 1 waits
    with pytest.raises(asyncio.CancelledError):
        await crashed
    devices.acking["pager-2"] = "Dr Okafor"

    # The entry is claimed again by another consumer: same step, same key.
    result = await actions(devices.broker).trigger(alarm(800, 800, 3000), context(redis))

    assert (result["ackedBy"], result["level"]) == ("pager-2", 3)
    assert [len(devices.got(d)) for d in ("bed-12", "pager-1", "pager-2")] == [1, 1, 1]


async def test_an_acknowledgement_sent_while_no_consumer_listened_is_not_lost(
        redis: Redis, devices: AlarmDevices) -> None:
    crashed = asyncio.create_task(actions(devices.broker).trigger(
        alarm(60_000, 1000), context(redis)))
    await devices.wait_for("bed-12")
    await asyncio.sleep(0.05)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    devices.acknowledge(devices.got("bed-12")[0], "bed-12", by="RN Diaz")  # nobody listens

    result = await actions(devices.broker).trigger(alarm(60_000, 1000), context(redis))

    assert (result["acked"], result["ackedBy"], result["level"]) == (True, "bed-12", 1)
    assert len(devices.got("bed-12")) == 1 and devices.got("pager-1") == []


@pytest.mark.slow
async def test_a_broker_lost_mid_escalation_is_retryable_and_the_retry_resumes(
        redis: Redis, broker: MosquittoServer) -> None:
    with AlarmDevices(broker) as before_crash:
        task = asyncio.create_task(actions(broker).trigger(alarm(5000, 5000), context(redis)))
        await before_crash.wait_for("bed-12")
        await asyncio.sleep(0.05)
        broker.stop()
        with pytest.raises(TransientSourceError, match="lost the connection to MQTT broker"):
            await asyncio.wait_for(task, 5)
        [raised] = before_crash.got("bed-12")
    broker.start()
    with AlarmDevices(broker) as after_restart:
        after_restart.acknowledge(raised, "bed-12", by="RN Diaz")

        result = await actions(broker).trigger(alarm(5000, 5000), context(redis))

        assert (result["acked"], result["ackedBy"], result["level"]) == (True, "bed-12", 1)
        assert after_restart.received == []  # level 1 was not raised again


@pytest.mark.parametrize(("change", "message"), [
    ({"levels": []}, "field levels: List should have at least 1 item"),
    ({"levels": [{"devices": []}]}, "field levels.0.devices: List should have at least 1"),
    ({"levels": [{"devices": ["bed/12"]}]}, "field levels.0.devices.0: String should match"),
    ({"levels": [{"devices": ["#"]}]}, "field levels.0.devices.0: String should match"),
    ({"levels": [{"devices": ["a"], "ackTimeoutMs": 50}]},
     "field levels.0.ackTimeoutMs: Input should be greater than or equal to 100"),
    ({"levels": [{"devices": ["a"], "ackTimeoutMs": 900_000}] * 5},
     "the levels' ackTimeoutMs add up to 4500000 ms; an escalation takes at most"),
    ({"levels": [{"devices": ["a"]}] * 6}, "field levels: List should have at most 5 items"),
    ({"message": ""}, "field message: String should have at least 1 character"),
    ({"message": None}, "field message: Input should be a valid string"),
    ({"kind": "domestic"}, "field kind: Input should be 'clinical' or 'industrial'"),
    ({"severity": "urgent"}, "field severity: Input should be 'low', 'medium'"),
    ({"alarmId": "a/b"}, "field alarmId: String should match pattern"),
    ({"operation": "snooze"}, "field operation: Input should be 'raise' or 'cancel'"),
    ({"topic": "x/y"}, "field topic: Extra inputs are not permitted"),
])
async def test_parameter_errors_name_the_parameter(
        redis: Redis, devices: AlarmDevices, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="alarm_trigger params: ") as raised:
        await actions(devices.broker).trigger({**alarm(1000), **change}, context(redis))
    assert message in str(raised.value)
    assert devices.received == []


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no MQTT broker: ALARM_MQTT_HOST is unset"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_MQTT_PORT": "99999"}, "ALARM_MQTT_PORT must be a port"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_MQTT_PORT": "x"}, "ALARM_MQTT_PORT must be a port"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_MQTT_TIMEOUT_MS": "5"}, "ALARM_MQTT_TIMEOUT_MS must be"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_TOPIC_PREFIX": "site/#"}, "must not hold wildcards"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_MQTT_CA_FILE": "/nonexistent/ca.crt"},
     "ALARM_MQTT_CA_FILE /nonexistent/ca.crt is not a file"),
    ({"ALARM_MQTT_HOST": "h", "ALARM_MQTT_USERNAME": "fleet"},
     "no MQTT password: the environment variable ALARM_MQTT_PASSWORD is unset"),
])
async def test_setting_errors_fail_the_call_naming_the_variable(
        redis: Redis, env: dict[str, str], message: str) -> None:
    capability = AlarmActions(AlarmSettings.from_env(env), secrets=EnvSecrets(env))
    with pytest.raises(ValueError, match="alarm_trigger: ") as raised:
        await capability.trigger(alarm(1000), context(redis))
    assert message in str(raised.value)


async def test_a_broker_refusing_the_login_is_a_permanent_error(redis: Redis) -> None:
    with MosquittoServer(users={"fleet": "right-password"}) as secured:
        env = {"ALARM_MQTT_HOST": "127.0.0.1", "ALARM_MQTT_PORT": str(secured.port),
               "ALARM_MQTT_USERNAME": "fleet", "ALARM_MQTT_PASSWORD": "wrong-password"}
        capability = AlarmActions(AlarmSettings.from_env(env), secrets=EnvSecrets(env))
        with pytest.raises(PermanentSourceError, match="refused the connection") as raised:
            await capability.trigger(alarm(1000), context(redis))
        assert "wrong-password" not in str(raised.value)


async def test_a_tls_broker_is_verified_against_the_configured_ca(redis: Redis) -> None:
    with MosquittoServer(tls=True) as secured, AlarmDevices(secured) as watching:
        assert secured.tls_port is not None
        watching.acking["bed-12"] = "RN Diaz"
        env = {"ALARM_MQTT_HOST": "127.0.0.1", "ALARM_MQTT_PORT": str(secured.tls_port),
               "ALARM_MQTT_TLS": "true", "ALARM_MQTT_CA_FILE": str(secured.ca_file)}
        result = await AlarmActions(AlarmSettings.from_env(env)).trigger(
            alarm(5000), context(redis))
        assert result["acked"] is True
        # Without the CA, the broker's certificate is not trusted: no connection.
        untrusted = AlarmActions(AlarmSettings.from_env({**env, "ALARM_MQTT_CA_FILE": ""}))
        with pytest.raises(TransientSourceError, match="cannot connect"):
            await untrusted.trigger(alarm(5000), context(redis, key="other"))
        assert len(watching.got("bed-12")) == 1


async def test_a_broker_that_is_gone_is_a_transient_error(redis: Redis) -> None:
    with pytest.raises(TransientSourceError, match=r"cannot connect to MQTT broker "
                       r"127\.0\.0\.1:\d+"):
        await actions(free_port()).trigger(alarm(1000), context(redis))


async def test_a_broker_the_steps_allow_list_does_not_name_is_refused(
        redis: Redis, devices: AlarmDevices) -> None:
    with pytest.raises(RefusedTargetError, match="not in the allow-list"):
        await actions(devices.broker).trigger(alarm(1000), context(
            redis, hosts=HostPolicy.of(["mqtt.plant.example"])))
    assert devices.received == []


async def test_a_redelivered_step_does_not_raise_again(redis: Redis,
                                                       devices: AlarmDevices) -> None:
    devices.acking["bed-12"] = "RN Diaz"
    capability = actions(devices.broker)
    first = await capability.trigger(alarm(5000), context(redis))
    again = await capability.trigger(alarm(5000), context(redis))
    assert again["duplicate"] is True and again["alarmId"] == first["alarmId"]
    assert len(devices.got("bed-12")) == 1


# -- through the signed catalog -------------------------------------------------------


async def test_an_acknowledged_alarm_runs_through_the_pipeline_and_is_audited(
        redis: Redis, devices: AlarmDevices) -> None:
    devices.acking["bed-12"] = "RN Diaz"
    rig = await safe_rig(redis, [actions(devices.broker).spec()], [DEFINITION])

    result = await rig.call("alarm_trigger", alarm(5000))

    assert result["acked"] is True
    [record] = await rig.audit()
    assert record.kind == "executed"
    assert record.body["stateBefore"]["raised"] is False
    assert record.body["stateAfter"] == {"alarmId": result["alarmId"], "raised": True,
                                         "level": 1, "acked": True, "ackedBy": "bed-12"}


async def test_an_alarm_nobody_acknowledged_is_withdrawn_audited_and_alerted(
        redis: Redis, devices: AlarmDevices) -> None:
    rig = await safe_rig(redis, [actions(devices.broker).spec()], [DEFINITION])

    with pytest.raises(RolledBackError) as caught:
        await rig.call("alarm_trigger", alarm(100, 100))

    assert caught.value.rollback_ok is True
    [raised] = devices.got("bed-12")
    assert [m["alarmId"] for m in devices.got("bed-12", "cancel")] == [raised["alarmId"]]
    assert [m["alarmId"] for m in devices.got("pager-1", "cancel")] == [raised["alarmId"]]
    failed, rollback = await rig.audit()
    assert (failed.kind, failed.body["stage"]) == ("failed", "postcondition")
    assert rollback.kind == "rollback" and rollback.body["ok"] is True
    assert rollback.body["rollbackParams"]["operation"] == "cancel"
    [alert] = await rig.alerts()
    assert "alarm_trigger" in alert["event"]


async def test_a_broker_that_is_gone_is_retried_then_its_breaker_opens(redis: Redis) -> None:
    gone = free_port()
    rig = await safe_rig(redis, [actions(gone, FAST).spec()], [DEFINITION])
    with pytest.raises(CallFailedError, match="failed after 2 attempts: .*cannot connect"):
        await rig.call("alarm_trigger", alarm(1000))
    for _ in range(5):
        with pytest.raises((CallFailedError, CircuitOpenError)) as caught:
            await rig.call("alarm_trigger", alarm(1000))
        if isinstance(caught.value, CircuitOpenError):
            break
    else:
        raise AssertionError("the breaker never opened")
    with MosquittoServer() as back, AlarmDevices(back) as watching:
        # Even with a broker there now, the open breaker spares it.
        with pytest.raises(CircuitOpenError):
            await rig.call("alarm_trigger", alarm(1000))
        assert watching.received == []


async def test_a_redelivered_event_does_not_raise_the_alarm_twice(
        redis: Redis, devices: AlarmDevices) -> None:
    devices.acking["bed-12"] = "RN Diaz"
    rules = {"version": 1, "rules": [{
        "name": "desaturation", "match": {"stream": "vitals"},
        "steps": [{"id": "alarm", "call": "alarm_trigger", "params": {
            "kind": "clinical", "message": "SpO2 {{ payload.value }}% bed 12",
            "levels": [{"devices": ["bed-12"], "ackTimeoutMs": 5000}]}}]}]}
    event = {"source": "monitor-12", "value": 82, "timestamp": "2026-12-03T10:00:00Z",
             "nodeId": "spo2"}

    await deliver_twice(redis, rules, actions(devices.broker).spec(), "vitals", event)

    [raised] = devices.got("bed-12")
    assert raised["message"] == "SpO2 82% bed 12"
