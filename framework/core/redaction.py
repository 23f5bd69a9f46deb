"""Secret redaction: what logs, errors and APIs print instead of a secret.

A value is secret when its key looks like one (token, password, api key, ...)
or when it is the password of a URL (``redis://user:pw@host``).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

_SECRET_KEY = re.compile(
    r"token|password|passwd|secret|api[_-]?key|app(lication)?[_-]?key|credential|authorization"
    r"|private[_-]?key",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@]*):[^@/]*@")


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """``redis://user:pw@host`` -> ``redis://user:***@host``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", url)
