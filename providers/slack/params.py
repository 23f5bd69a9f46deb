"""``slack_message``'s parameters.

``mode`` ``"api"`` posts with ``chat.postMessage`` and a bot token (``channel``
required, ``threadTs`` for a reply in a thread); ``"webhook"`` posts to an incoming
webhook, whose URL is a credential and so is read from the environment like the
token. Neither secret is ever a parameter: parameters are stored in the audit
chain and the step records.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Slack truncates text past 40,000 characters and refuses more than 50 blocks.
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")


class SlackMessageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    mode: Literal["api", "webhook"] = "api"
    channel: str | None = Field(None, min_length=1, max_length=200)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    blocks: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=MAX_BLOCKS)
    thread_ts: str | None = Field(None, alias="threadTs")
    reply_broadcast: bool = Field(False, alias="replyBroadcast")
    mrkdwn: bool = True
    token_env: str = Field("SLACK_BOT_TOKEN", alias="tokenEnv", pattern=_ENV_NAME)
    webhook_env: str = Field("SLACK_WEBHOOK_URL", alias="webhookEnv", pattern=_ENV_NAME)

    @field_validator("thread_ts")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None and not _TS.match(value):
            raise ValueError(f"{value!r} is not a Slack message timestamp (1712345678.123456)")
        return value

    @field_validator("blocks")
    @classmethod
    def _typed_blocks(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, block in enumerate(value or []):
            if not isinstance(block.get("type"), str):
                raise ValueError(f"[{index}]: a block needs a string type (section, divider...)")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.text is None and self.blocks is None:
            raise ValueError("give text, blocks or both")
        if self.mode == "api" and self.channel is None:
            raise ValueError("channel is required with mode api")
        if self.mode == "webhook" and (self.channel is not None or self.reply_broadcast):
            raise ValueError("an incoming webhook posts to its own channel: "
                             "channel and replyBroadcast are for mode api")
        return self

    def body(self) -> dict[str, Any]:
        """The JSON body both endpoints take."""
        body: dict[str, Any] = {}
        if self.channel is not None:
            body["channel"] = self.channel
        if self.text is not None:
            body["text"] = self.text
        if self.blocks is not None:
            body["blocks"] = self.blocks
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
            if self.reply_broadcast:
                body["reply_broadcast"] = True
        if not self.mrkdwn:
            body["mrkdwn"] = False
        return body
