"""What the ops API answers when Redis cannot: the deadline of a request's reads, the
failures that mean "Redis unavailable", and the 503 body that says so."""

from __future__ import annotations

from typing import Any

from framework.core import UNAVAILABLE, RedisUnavailableError

# A request that reads Redis gives up after this long (a frozen Redis would otherwise
# hold it for the client's socket timeout times its retries).
OPS_REDIS_DEADLINE_S = 3.0
# The failures that mean "Redis cannot answer now": 503, not 500.
REDIS_DOWN = (*UNAVAILABLE, RedisUnavailableError, TimeoutError)


def redis_unavailable(exc: BaseException) -> dict[str, Any]:
    """The 503 body: what is unavailable, and why (the error's type and message)."""
    reason = str(exc) or f"no answer within {OPS_REDIS_DEADLINE_S:g} s"
    return {"status": "redis unavailable", "error": "Redis unavailable", "dependency": "redis",
            "reason": f"{type(exc).__name__}: {reason}"}
