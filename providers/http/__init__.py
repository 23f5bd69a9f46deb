"""HTTP action capabilities: ``http_call`` and ``webhook_call`` (HMAC-signed)."""

from providers.http.actions import HttpActions, HttpCallParams, WebhookCallParams
from providers.http.signature import SIGNATURE_HEADER, sign_body, verify_signature

__all__ = [
    "SIGNATURE_HEADER",
    "HttpActions",
    "HttpCallParams",
    "WebhookCallParams",
    "sign_body",
    "verify_signature",
]
