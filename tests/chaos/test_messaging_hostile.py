"""Hostile peers of the messaging actions: slow, huge, wrong or silent. Each ends in
a clear error within the call's deadline and size limit, never a hang, and sends
nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from framework.consuming import CallPolicy
from framework.consuming.capabilities.breaker import BreakerPolicy
from framework.core import DeadLetterError
from framework.core.errors import CallFailedError
from framework.testing import ReplayServer, Reply
from providers.email import EmailActions, SmtpSettings
from providers.fhir import FhirActions, FhirSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from providers.slack import SlackActions
from tests.providers.fhir_double import FHIR_TOKEN
from tests.providers.messaging_rig import Rig, definition_path, safe_rig
from tests.providers.slack_double import BOT_TOKEN

SHORT = CallPolicy(timeout_s=0.5, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02,
                   breaker=BreakerPolicy(failure_threshold=50))
MESSAGE = {"channel": "C0ALERTS", "text": "hello"}


@pytest.fixture
async def small_client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient(max_body_bytes=64 * 1024)
    yield client
    await client.aclose()


async def slack_rig(redis: Redis, replay: ReplayServer, client: GuardedClient) -> Rig:
    actions = SlackActions(client=client, secrets=EnvSecrets({"SLACK_BOT_TOKEN": BOT_TOKEN}),
                           policy=SHORT, api_base=f"{replay.url}/api")
    return await safe_rig(redis, [actions.spec()],
                          [definition_path("slack", "slack_message")])


async def test_a_slow_slack_times_out_each_attempt(
        redis: Redis, replay: ReplayServer, small_client: GuardedClient) -> None:
    replay.route("/api/chat.postMessage", Reply(body={"ok": True, "ts": "1.2"}, delay_s=3))
    rig = await slack_rig(redis, replay, small_client)
    with pytest.raises(CallFailedError, match="2 attempts: TimeoutError: timed out after 0.5"):
        await rig.call("slack_message", MESSAGE)
    assert len(replay.requests) == 2


async def test_a_huge_slack_answer_is_not_read_past_the_limit(
        redis: Redis, replay: ReplayServer, small_client: GuardedClient) -> None:
    replay.route("/api/chat.postMessage", Reply(body=b"{" + b" " * 2_000_000 + b"}"))
    rig = await slack_rig(redis, replay, small_client)
    with pytest.raises(DeadLetterError, match="maxBodyBytes=65536"):
        await rig.call("slack_message", MESSAGE)


async def test_a_wrong_slack_answer_is_named(
        redis: Redis, replay: ReplayServer, small_client: GuardedClient) -> None:
    replay.route("/api/chat.postMessage",
                 Reply(body="<html>maintenance</html>", content_type="text/html"))
    rig = await slack_rig(redis, replay, small_client)
    with pytest.raises(DeadLetterError, match="without a JSON object.*maintenance"):
        await rig.call("slack_message", MESSAGE)


async def test_a_huge_fhir_search_is_not_read_past_the_limit(
        redis: Redis, replay: ReplayServer, small_client: GuardedClient) -> None:
    replay.route("/fhir/Communication", Reply(body=b'{"resourceType": "Bundle", "entry": ['
                                              + b'{}, ' * 100_000 + b'{}]}'))
    actions = FhirActions(FhirSettings(base_url=f"{replay.url}/fhir"), client=small_client,
                          secrets=EnvSecrets({"FHIR_TOKEN": FHIR_TOKEN}), policy=SHORT)
    rig = await safe_rig(redis, [actions.spec()], [definition_path("fhir", "patient_alert")])
    with pytest.raises(DeadLetterError, match="maxBodyBytes"):
        await rig.call("patient_alert", {"patient": "Patient/p-1", "message": "x"})


async def test_a_silent_smtp_server_times_out_and_is_retried(
        redis: Redis, small_client: GuardedClient) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader,
                                     writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none",
                            command_timeout_s=0.2)
    actions = EmailActions(settings, client=small_client, policy=SHORT)
    rig = await safe_rig(redis, [actions.spec()], [definition_path("email", "email_send")])
    try:
        with pytest.raises(CallFailedError, match="after 2 attempts.*smtp://127.0.0.1"):
            await rig.call("email_send", {"to": ["ops@plant.test"], "from": "f@plant.test",
                                          "subject": "s", "text": "t"})
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    assert len(connections) == 2
