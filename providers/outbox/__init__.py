"""What the messaging actions (email, Slack, SMS, FHIR, Grist) share: the ledger of
what a step already delivered, secrets read from the environment, and the
classification of an HTTP answer into a result, a retry or a refusal."""

from providers.outbox.answers import check_answer, json_object, parse_retry_after_s
from providers.outbox.ledger import SentLedger, sent_key
from providers.outbox.secrets import EnvSecrets

__all__ = [
    "EnvSecrets",
    "SentLedger",
    "check_answer",
    "json_object",
    "parse_retry_after_s",
    "sent_key",
]
