"""The webhook signature: HMAC-SHA256 of the exact body bytes, hex, ``sha256=`` prefix.

The receiver recomputes it over the raw body it received with the shared secret
and compares in constant time (:func:`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature-256"
_PREFIX = "sha256="


def sign_body(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{_PREFIX}{digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True if ``header`` is the signature of ``body`` under ``secret``."""
    if not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(sign_body(secret, body), header)
