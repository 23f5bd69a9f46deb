"""An HTTP answer of a messaging API: a result, a retry, or a refusal.

408, 429 and 5xx are retryable (:class:`~framework.core.TransientSourceError`, with
the ``Retry-After`` the target asked for); any other 4xx is not
(:class:`~framework.core.PermanentSourceError`: a bad parameter, bad credentials, an
unknown channel will fail the same way again). The error names the target by a
label the caller chose, never by its URL (a Slack webhook URL is a credential),
and quotes the target's own error description.
"""

from __future__ import annotations

import email.utils
from datetime import UTC
from typing import Any

import httpx
import orjson

from framework.core import PermanentSourceError, TransientSourceError

_RETRYABLE = frozenset({408, 425, 429})
# A Retry-After further out than this is not waited for within one call.
MAX_RETRY_AFTER_S = 300.0


def parse_retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now_s), MAX_RETRY_AFTER_S)


def check_answer(response: httpx.Response, *, label: str, detail: str, now_s: float) -> None:
    """Return for a 2xx/3xx answer; raise for the others. ``detail``: the target's error
    description, already taken from its body."""
    status = response.status_code
    if status < 400:
        return
    what = f"{label} answered {status} {response.reason_phrase}: {detail}"
    if status in _RETRYABLE or status >= 500:
        retry_after = parse_retry_after_s(response.headers.get("Retry-After"), now_s=now_s)
        raise TransientSourceError(what, retry_after_s=retry_after)
    raise PermanentSourceError(what)




def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; anything else as ``{"message": <its start>}``, so
    that an error page is still quoted."""
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {"message": response.text[:200]}
    return answer if isinstance(answer, dict) else {"message": str(answer)[:200]}
