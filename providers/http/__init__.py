"""Any HTTP service: the ``HTTP_JSON`` source (any JSON API by configuration alone)
and the ``http_call`` / ``webhook_call`` actions (the webhook HMAC-signed)."""

from providers.http.actions import HttpActions, HttpCallParams, WebhookCallParams
from providers.http.guarded_client import GuardedClient, check_name
from providers.http.schema import HttpJsonItem
from providers.http.signature import SIGNATURE_HEADER, sign_body, verify_signature
from providers.http.source import create_http_json_connector
from providers.http.source_config import HttpJsonConfig

__all__ = [
    "SIGNATURE_HEADER",
    "GuardedClient",
    "HttpActions",
    "HttpCallParams",
    "HttpJsonConfig",
    "HttpJsonItem",
    "WebhookCallParams",
    "check_name",
    "create_http_json_connector",
    "sign_body",
    "verify_signature",
]
