"""``alarm_trigger``: raise an alarm on devices through MQTT, escalating level by
level until a device acknowledges it. Parameters::

    {"kind": "clinical", "severity": "critical", "message": "SpO2 82% bed 12",
     "source": "ward-3/bed-12",
     "levels": [{"devices": ["bedside-12", "nurse-station-3"], "ackTimeoutMs": 30000},
                {"devices": ["charge-nurse-pager"], "ackTimeoutMs": 60000},
                {"devices": ["physician-on-call"], "ackTimeoutMs": 120000}]}

Each device of a level gets, at QoS 1 on ``{prefix}/devices/{device}/alarm``,
``{"alarmId", "operation": "raise", "kind", "severity", "message", "source",
"level", "ackTopic", "at"}``; it acknowledges by publishing ``{"alarmId",
"device", "by"}`` (retained, QoS 1) on ``ackTopic`` (``{prefix}/acks/{alarmId}``).
No acknowledgement within the level's ``ackTimeoutMs``: the next level is raised
(the earlier ones stay raised and may still acknowledge). The result::

    {"alarmId": "...", "acked": true, "ackedBy": "charge-nurse-pager", "by": "RN Diaz",
     "level": 2, "levels": 3, "duplicate": false}

Nobody acknowledged at the last level: ``"acked": false`` (the postcondition
fails; the rollback, ``{"operation": "cancel", "alarmId": "previous"}``, withdraws
the alarm from every device so that a device coming back hours later does not
show a stale alarm, and the failure is alerted on ``capability-alerts``).

The escalation is durable (:mod:`providers.alarm.escalation`): a crashed consumer's
entry is claimed again and the escalation resumes where it was. The read function
is that record: ``{"alarmId", "raised", "level", "acked", "ackedBy"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.consuming import CallContext, CallPolicy, CapabilitySpec
from framework.core import RefusedTargetError
from providers.alarm.bus import AlarmBus
from providers.alarm.escalation import EscalationStore, Escalator
from providers.alarm.params import CAPABILITY, MAX_ESCALATION_MS, AlarmSettings, parse_params
from providers.outbox import EnvSecrets, SentLedger

ALARM_TRIGGER_ID = CAPABILITY
ALARM_TRIGGER_VERSION = "1.0.0"


class AlarmActions:
    def __init__(self, settings: AlarmSettings, *, secrets: EnvSecrets | None = None,
                 ledger: SentLedger | None = None, policy: CallPolicy | None = None) -> None:
        self._settings = settings
        self._secrets = secrets or EnvSecrets()
        self._ledger = ledger or SentLedger()
        # The longest escalation, and a margin for the publishes, bounds one attempt.
        self._policy = policy or CallPolicy(timeout_s=MAX_ESCALATION_MS / 1000 + 60,
                                            max_retries=3, backoff_max_s=30.0)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            ALARM_TRIGGER_ID, ALARM_TRIGGER_VERSION, self.trigger, policy=self._policy,
            description="Raise an alarm on devices through MQTT, escalating until acknowledged",
            read_state=self.read_state,
            breaker_scope=lambda params: f"mqtt:{self._settings.host}:{self._settings.port}")

    async def trigger(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        call = parse_params(params)
        settings = self._settings.checked()
        if context.hosts is not None:
            reason = context.hosts.refuse_name(str(settings.host), settings.port)
            if reason is not None:
                raise RefusedTargetError(f"{CAPABILITY}: {reason}")
        password = (self._secrets.read(settings.password_env, capability=CAPABILITY,
                                       what="MQTT password")
                    if settings.username is not None else None)

        async def deliver() -> dict[str, Any]:
            async with AlarmBus(settings, password) as bus:
                escalator = Escalator(call, settings, bus, context)
                if call.operation == "cancel":
                    return await escalator.cancel()
                return await escalator.run()

        return await self._ledger.once(context, deliver)

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        call = parse_params(params)
        escalation = await EscalationStore(context.redis).load(context.idempotency_key)
        return escalation.as_state(call.identity(context.idempotency_key))
