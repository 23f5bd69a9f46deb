"""The ``http-webhook`` connector type: an HTTP (and WebSocket) receiver that answers
2xx only once each event is in the stream, with authentication (API key, bearer,
GitHub-style and timestamped HMAC), size, content-type and contract checks, a rate
limit per client shared by every replica, and idempotency keys."""

from providers.webhook.auth import hex_hmac
from providers.webhook.config import WebhookConfig
from providers.webhook.connector import WEBHOOK_TYPE, WebhookConnector, create_webhook_connector

__all__ = [
    "WEBHOOK_TYPE",
    "WebhookConfig",
    "WebhookConnector",
    "create_webhook_connector",
    "hex_hmac",
]
