"""The ``http-webhook`` connector type: a receiver run as a push connector.

Each request is independent, so batches are appended without checking the state
generation (``ordered=False``) and several replicas may run at once, each fenced by
its own lease ``lease:NAME:REPLICA`` (``CONNECTOR_REPLICA``), sharing the stream,
the dedupe keys (an Idempotency-Key redelivered to another replica is still a no-op)
and the rate-limit counters. See docs/webhook.md.
"""

from __future__ import annotations

from typing import Any

from framework.core import ConfigError
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    PushConnector,
    PushParts,
    parse_provider_config,
)
from providers.webhook.auth import Authenticator
from providers.webhook.config import NoAuth, WebhookConfig
from providers.webhook.handlers import Endpoint
from providers.webhook.inbox import Inbox
from providers.webhook.intake import Delivery, Intake
from providers.webhook.keyring import KeyFileError, KeyRing
from providers.webhook.rate_limit import RateLimiter
from providers.webhook.receiver import WebhookReceiver

WEBHOOK_TYPE = "http-webhook"


class WebhookConnector(PushConnector[Delivery, dict[str, Any]]):
    """A push connector that also stops listening when it is closed."""

    def __init__(self, *, receiver: WebhookReceiver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.receiver = receiver

    async def aclose(self) -> None:
        await super().aclose()
        await self.receiver.close()


def create_webhook_connector(
    config: ConnectorConfig, context: ConnectorContext
) -> WebhookConnector:
    settings = parse_provider_config(WebhookConfig, config)
    logger = context.logger
    keys = None
    if not isinstance(settings.auth, NoAuth):
        try:
            keys = KeyRing(settings.auth.secrets, settings.auth.secrets_file, logger=logger)
        except KeyFileError as exc:
            raise ConfigError(f"{config.type} connector {config.name}: auth.{exc}") from None
    store = context.store
    limiter = None
    if settings.rate_limit is not None:
        limiter = RateLimiter(store.redis, settings.rate_limit, f"{store.keys.state}:rate:")
    endpoint = Endpoint(config=settings, auth=Authenticator(settings.auth, keys),
                        intake=Intake(settings), inbox=Inbox(settings.max_pending),
                        limiter=limiter, logger=logger)
    receiver = WebhookReceiver(endpoint, logger)
    parts = PushParts[Delivery, dict[str, Any]](
        source=receiver, item_id=lambda d: d.item_id, transformer=lambda d: d.event,
        raw=lambda d: d.raw, dedupe_key=lambda d: d.dedupe_key, ordered=False)
    return WebhookConnector(receiver=receiver, config=config, parts=parts, store=store,
                            clock=context.clock, logger=logger)
