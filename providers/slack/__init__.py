"""Slack: the ``slack_message`` action (chat.postMessage with a bot token, or an
incoming webhook)."""

from providers.slack.actions import (
    SLACK_API_BASE,
    SLACK_MESSAGE_ID,
    SLACK_MESSAGE_VERSION,
    SlackActions,
)
from providers.slack.params import SlackMessageParams

__all__ = [
    "SLACK_API_BASE",
    "SLACK_MESSAGE_ID",
    "SLACK_MESSAGE_VERSION",
    "SlackActions",
    "SlackMessageParams",
]
