"""``slack_message``: post a message with ``chat.postMessage`` or an incoming webhook.

Slack's Web API answers HTTP 200 for most failures, with ``{"ok": false, "error":
"channel_not_found"}``; a rate limit is HTTP 429 with ``Retry-After`` (seconds),
which the invoker honours before the next attempt. Errors that the same call would
hit again (bad token, unknown channel, archived channel, invalid blocks) are not
retried; Slack's own transient errors (``internal_error``, ``fatal_error``,
``service_unavailable``, ``request_timeout``, ``ratelimited``) are.
An incoming webhook answers ``ok`` as plain text, or an error code as the body
with a 4xx/5xx status (``invalid_payload``, ``no_service``, ``channel_is_archived``...).

The result (``{"ok", "channel", "ts"}``, ``ts`` usable as the ``threadTs`` of a
follow-up step) is recorded in the :class:`~providers.outbox.SentLedger`, so a
redelivered step does not post again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from framework.consuming import CallContext, CallPolicy, CapabilitySpec, describe_validation_error
from framework.core import MalformedResponseError, PermanentSourceError, TransientSourceError
from providers.http import GuardedClient
from providers.outbox import EnvSecrets, SentLedger, check_answer, parse_retry_after_s
from providers.slack.params import SlackMessageParams

SLACK_MESSAGE_ID = "slack_message"
SLACK_MESSAGE_VERSION = "1.0.0"
SLACK_API_BASE = "https://slack.com/api"
_TRANSIENT_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                               "service_unavailable", "request_timeout", "rollup_error"})
_JSON = {"Content-Type": "application/json; charset=utf-8"}


class SlackActions:
    def __init__(self, *, client: GuardedClient, secrets: EnvSecrets | None = None,
                 ledger: SentLedger | None = None, policy: CallPolicy | None = None,
                 api_base: str = SLACK_API_BASE) -> None:
        """``api_base``: Slack's Web API (another origin only for a test double)."""
        self._client = client
        self._secrets = secrets or EnvSecrets()
        self._ledger = ledger or SentLedger()
        self._policy = policy or CallPolicy(timeout_s=15.0, max_retries=3, backoff_max_s=60.0)
        self._api_base = api_base.rstrip("/")

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            SLACK_MESSAGE_ID, SLACK_MESSAGE_VERSION, self.post, policy=self._policy,
            description="Post a Slack message (chat.postMessage or an incoming webhook)",
            breaker_scope=lambda params: f"slack:{params.get('mode', 'api')}")

    async def post(self, params: Mapping[str, Any], context: CallContext) -> dict[str, Any]:
        try:
            call = SlackMessageParams.model_validate(dict(params))
        except ValidationError as exc:
            raise ValueError(f"slack_message params: {describe_validation_error(exc)}") \
                from None

        async def deliver() -> dict[str, Any]:
            if call.mode == "webhook":
                return await self._post_webhook(call, context)
            return await self._post_api(call, context)

        return await self._ledger.once(context, deliver)

    async def _post_api(self, call: SlackMessageParams, context: CallContext) -> dict[str, Any]:
        token = self._secrets.read(call.token_env, capability=SLACK_MESSAGE_ID,
                                   what="bot token", param="tokenEnv")
        label = "Slack chat.postMessage"
        response = await self._client.request(
            "POST", f"{self._api_base}/chat.postMessage", step_hosts=context.hosts,
            headers={**_JSON, "Authorization": f"Bearer {token}"},
            content=orjson.dumps(call.body()), label=label)
        answer = _json_object(response, label)
        error = str(answer.get("error", ""))
        check_answer(response, label=label, detail=error or response.text[:200],
                     now_s=context.clock.time())
        if answer.get("ok") is not True:
            _raise_api_error(label, error, response, now_s=context.clock.time())
        context.logger.info("slack_message_posted", channel=answer.get("channel"),
                            ts=answer.get("ts"))
        result = {"ok": True, "mode": "api", "channel": answer.get("channel"),
                  "ts": answer.get("ts")}
        if call.thread_ts is not None:
            result["threadTs"] = call.thread_ts
        return result

    async def _post_webhook(self, call: SlackMessageParams,
                            context: CallContext) -> dict[str, Any]:
        url = self._secrets.read(call.webhook_env, capability=SLACK_MESSAGE_ID,
                                 what="incoming webhook URL", param="webhookEnv")
        label = "Slack incoming webhook"
        response = await self._client.request(
            "POST", url, step_hosts=context.hosts, headers=_JSON,
            content=orjson.dumps(call.body()), label=label)
        check_answer(response, label=label, detail=self._secrets.redact(response.text[:200]),
                     now_s=context.clock.time())
        context.logger.info("slack_message_posted", mode="webhook")
        return {"ok": True, "mode": "webhook"}


def _json_object(response: httpx.Response, label: str) -> dict[str, Any]:
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        return answer
    if response.status_code >= 400:
        return {}  # an error page: check_answer reports it by status
    raise MalformedResponseError(f"{label} answered {response.status_code} without a JSON "
                                 f"object: {response.text[:200]!r}")


def _raise_api_error(label: str, error: str, response: httpx.Response, *, now_s: float) -> None:
    what = f"{label} failed: {error or 'no error code'}"
    if error in _TRANSIENT_ERRORS:
        retry_after = parse_retry_after_s(response.headers.get("Retry-After"), now_s=now_s)
        raise TransientSourceError(what, retry_after_s=retry_after)
    raise PermanentSourceError(what)
