"""``slack_message`` against a Slack double replaying the Web API's and the incoming
webhook's real shapes, through the signed catalog's pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.consuming import CallPolicy
from framework.core import DeadLetterError
from framework.core.errors import (
    CallFailedError,
    CircuitOpenError,
    RetryLaterError,
    RolledBackError,
)
from framework.testing import ReplayServer
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from providers.slack import SlackActions
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.slack_double import BOT_TOKEN, WEBHOOK_PATH, SlackDouble

DEFINITION = definition_path("slack", "slack_message")
MESSAGE = {"channel": "C0ALERTS", "text": "Pressure high on line 1: 9.2 bar"}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*9.2 bar* on line 1"}},
          {"type": "divider"}]


@pytest.fixture
def slack(replay: ReplayServer) -> Iterator[SlackDouble]:
    yield SlackDouble(replay)


@pytest.fixture
async def client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient()
    yield client
    await client.aclose()


async def rig_for(redis: Redis, slack: SlackDouble, client: GuardedClient, *,
                  env: dict[str, str] | None = None, reschedule: bool = False,
                  policy: CallPolicy = FAST_POLICY) -> Rig:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_WEBHOOK_URL": slack.webhook_url} \
        if env is None else env
    actions = SlackActions(client=client, secrets=EnvSecrets(env), policy=policy,
                           api_base=slack.api_base)
    return await safe_rig(redis, [actions.spec()], [DEFINITION], reschedule=reschedule)


async def test_a_message_with_blocks_is_posted_and_a_follow_up_goes_to_its_thread(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client)
    first = await rig.call("slack_message", {**MESSAGE, "blocks": BLOCKS})
    assert first["ok"] is True and first["channel"] == "C0ALERTS" and first["ts"]
    follow_up = await rig.call("slack_message", {**MESSAGE, "text": "Valve V-01 closed",
                                                 "threadTs": first["ts"]},
                               key="alerts:1-0:notify:follow-up")
    assert slack.posted == [
        {"channel": "C0ALERTS", "text": MESSAGE["text"], "blocks": BLOCKS},
        {"channel": "C0ALERTS", "text": "Valve V-01 closed", "thread_ts": first["ts"]},
    ]
    assert follow_up["threadTs"] == first["ts"]
    [request, _] = slack.server.requests_to("/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert await rig.kinds() == ["executed", "executed"]


async def test_an_incoming_webhook_posts_its_payload(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client)
    result = await rig.call("slack_message", {"mode": "webhook", "text": "hello",
                                              "blocks": BLOCKS})
    assert result == {"ok": True, "mode": "webhook", "duplicate": False}
    assert slack.posted == [{"text": "hello", "blocks": BLOCKS}]


BAD_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"text": None}, "give text, blocks or both"),
    ({"channel": None}, "channel is required"),
    ({"channel": ""}, "channel"),
    ({"text": "x" * 40_001}, "text"),
    ({"blocks": []}, "blocks"),
    ({"blocks": [{"text": "no type"}]}, "blocks"),
    ({"blocks": [{"type": "divider"}] * 51}, "blocks"),
    ({"threadTs": "yesterday"}, "threadTs"),
    ({"mode": "rtm"}, "mode"),
    ({"mode": "webhook"}, "own channel"),
    ({"tokenEnv": "not a variable"}, "tokenEnv"),
    ({"token": BOT_TOKEN}, "token"),
]


@pytest.mark.parametrize(("change", "named"), BAD_PARAMS)
async def test_every_parameter_error_names_the_parameter_and_posts_nothing(
        redis: Redis, slack: SlackDouble, client: GuardedClient, change: dict[str, Any],
        named: str) -> None:
    rig = await rig_for(redis, slack, client)
    params = {k: v for k, v in {**MESSAGE, **change}.items() if v is not None}
    with pytest.raises(DeadLetterError, match="slack_message params") as caught:
        await rig.call("slack_message", params)
    assert named in str(caught.value) and caught.value.attempts == 1
    assert BOT_TOKEN not in str(caught.value)
    assert slack.server.requests == []


@pytest.mark.parametrize(("channel", "error"), [("C0NOPE", "channel_not_found"),
                                                ("C0ARCHIVED", "is_archived")])
async def test_slack_refusals_are_dead_letters_without_retry(
        redis: Redis, slack: SlackDouble, client: GuardedClient, channel: str,
        error: str) -> None:
    rig = await rig_for(redis, slack, client)
    with pytest.raises(DeadLetterError, match=f"chat.postMessage failed: {error}") as caught:
        await rig.call("slack_message", {**MESSAGE, "channel": channel})
    assert caught.value.attempts == 1
    assert len(slack.server.requests) == 1


async def test_a_bad_token_is_refused_and_never_printed(
        redis: Redis, slack: SlackDouble, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "xoxb-9999-wrong-token"
    rig = await rig_for(redis, slack, client, env={"SLACK_BOT_TOKEN": wrong})
    with pytest.raises(DeadLetterError, match="invalid_auth") as caught:
        await rig.call("slack_message", MESSAGE)
    assert wrong not in str(caught.value) and wrong not in str(await rig.audit())
    assert wrong not in capsys.readouterr().err


async def test_an_unset_token_variable_is_named(redis: Redis, slack: SlackDouble,
                                                client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client, env={})
    with pytest.raises(DeadLetterError, match="environment variable SLACK_BOT_TOKEN"):
        await rig.call("slack_message", MESSAGE)
    assert slack.server.requests == []


async def test_a_webhook_error_does_not_print_the_webhook_url(
        redis: Redis, slack: SlackDouble, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    gone = f"{slack.server.url}/services/T0FLEET/B0GONE/goneSecret98765"
    rig = await rig_for(redis, slack, client, env={"SLACK_WEBHOOK_URL": gone})
    with pytest.raises(DeadLetterError, match="Slack incoming webhook answered 404") as caught:
        await rig.call("slack_message", {"mode": "webhook", "text": "hello"})
    assert "goneSecret98765" not in str(caught.value)
    assert "goneSecret98765" not in str(await rig.audit())
    assert "goneSecret98765" not in capsys.readouterr().err
    assert WEBHOOK_PATH not in str(caught.value)


async def test_429_retry_after_is_the_delay_before_the_next_attempt(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    slack.rate_limited, slack.retry_after_s = 1, 7
    rig = await rig_for(redis, slack, client, reschedule=True,
                        policy=CallPolicy(backoff_base_s=1.0, backoff_max_s=60.0))
    with pytest.raises(RetryLaterError) as caught:
        await rig.call("slack_message", MESSAGE)
    assert caught.value.retry_in_s == 7.0
    assert slack.posted == []
    await rig.call("slack_message", MESSAGE)  # the redelivery after the delay posts
    assert len(slack.posted) == 1


async def test_a_rate_limit_then_success_posts_once(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    slack.rate_limited, slack.retry_after_s = 1, 0
    rig = await rig_for(redis, slack, client)
    await rig.call("slack_message", MESSAGE)
    assert len(slack.posted) == 1 and len(slack.server.requests) == 2


async def test_a_failing_slack_is_retried_then_the_breaker_opens(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    slack.failing = 100
    rig = await rig_for(redis, slack, client)
    with pytest.raises(CallFailedError, match="after 3 attempts.*500"):
        await rig.call("slack_message", MESSAGE)
    with pytest.raises(CircuitOpenError):
        await rig.call("slack_message", MESSAGE)
    assert len(slack.server.requests) == 3


async def test_an_answer_without_ts_fails_the_postcondition_recorded_and_alerted(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client)
    with pytest.raises(RolledBackError):
        await rig.call("slack_message", {**MESSAGE, "channel": "C0NOTS"})
    [failed] = [r for r in await rig.audit() if r.kind == "failed"]
    assert failed.body["stage"] == "postcondition"
    [alert] = await rig.alerts()
    assert "slack_message" in alert["event"]


async def test_a_redelivered_step_does_not_post_again(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client)
    first = await rig.call("slack_message", MESSAGE, key="alerts:9-0:notify:send")
    again = await rig.call("slack_message", MESSAGE, key="alerts:9-0:notify:send")
    assert len(slack.posted) == 1
    assert again["ts"] == first["ts"] and again["duplicate"] is True


async def test_slack_outside_allow_hosts_is_refused(
        redis: Redis, slack: SlackDouble, client: GuardedClient) -> None:
    rig = await rig_for(redis, slack, client)
    with pytest.raises(DeadLetterError, match="target refused"):
        await rig.call("slack_message", MESSAGE, hosts=None)
    assert slack.server.requests == []
