"""A consumer that fails after the mail went out (the crash window between the
delivery and the step record) redelivers the entry; the redelivery finds the sent
ledger's record and sends nothing again. Through a real consumer group, the rules,
the signed catalog and an aiosmtpd server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from framework.consuming import Consumer, ConsumerOptions, RulesHandler, parse_rules
from framework.consuming.capabilities.spec import CallRequest, CapabilityExecutor
from framework.core import SystemClock, get_logger
from providers.email import EmailActions, SmtpSettings
from providers.http import GuardedClient
from tests.providers.messaging_rig import definition_path, safe_rig
from tests.providers.smtp_peer import SmtpPeer

STREAM = "alarms"
RULES = {"version": 1, "rules": [{
    "name": "mail-ops", "match": {"streams": [STREAM]},
    "steps": [{"id": "mail", "call": "email_send", "version": "^1",
               "params": {"to": ["ops@plant.test"], "from": "fleet@plant.test",
                          "subject": "Alarm {{ payload.value }}", "text": "see subject"}}],
}]}


class _CrashAfterFirstCall:
    """The call succeeds, then the process "dies" before the step is recorded: the
    entry is not acknowledged and comes back."""

    def __init__(self, inner: CapabilityExecutor) -> None:
        self._inner = inner
        self.calls = 0

    async def execute(self, request: CallRequest) -> Any:
        result = await self._inner.execute(request)
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("simulated crash after the delivery")
        return result


async def test_a_redelivery_after_a_crash_does_not_send_the_mail_again(
        redis: Redis, tmp_path: Path) -> None:
    client = GuardedClient()
    with SmtpPeer(tmp_path) as smtp:
        actions = EmailActions(SmtpSettings(host="127.0.0.1", port=smtp.port,
                                            security="none"), client=client)
        rig = await safe_rig(redis, [actions.spec()], [definition_path("email", "email_send")])
        executor = _CrashAfterFirstCall(rig.executor)
        handler = RulesHandler(parse_rules(RULES, source="rules.json"), executor, redis=redis)
        consumer = Consumer(redis, handler, ConsumerOptions(
            streams=(STREAM,), consumer="mailer-1", start_id="0", block_ms=50,
            retry_delay_ms=50, claim_idle_ms=100), clock=SystemClock(),
            logger=get_logger(test="mail-redelivery"))
        task = asyncio.create_task(consumer.run())
        try:
            await redis.xadd(STREAM, {"schema": "event-payload/1", "event": orjson.dumps(
                {"source": "sensor:1", "value": 9.2, "timestamp": "2026-12-01T10:00:00Z",
                 "nodeId": "plc-1"}).decode()})
            deadline = asyncio.get_running_loop().time() + 20
            while executor.calls < 2 or (await redis.xpending(STREAM, "connector-fleet"))[
                    "pending"]:
                assert asyncio.get_running_loop().time() < deadline, "not redelivered"
                await asyncio.sleep(0.05)
        finally:
            consumer.stop()
            await asyncio.wait_for(task, timeout=10)
            await client.aclose()
        assert len(smtp.received) == 1
    assert executor.calls == 2
    assert await rig.kinds() == ["executed", "executed"]
