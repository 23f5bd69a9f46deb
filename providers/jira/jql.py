"""The JQL of a poll: the configured query, narrowed to a recent window in
incremental mode.

The window is relative (``updated >= "-12m"``) on purpose: Jira reads an
absolute date in the timezone of the API user's profile, which the connector
cannot know, while a relative one is measured on Jira's own clock.
"""

from __future__ import annotations

import math
import re

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def split_order_by(jql: str) -> tuple[str, str]:
    """``project = SEC ORDER BY key`` -> (``project = SEC``, ``ORDER BY key``).
    An ``order by`` inside a quoted string is text, not a clause."""
    masked = _QUOTED.sub(lambda m: "x" * len(m.group(0)), jql)
    match = _ORDER_BY.search(masked)
    if match is None:
        return jql.strip(), ""
    return jql[: match.start()].strip(), jql[match.start() :].strip()


def window_minutes(elapsed_s: float, overlap_minutes: int) -> int:
    """Whole minutes back to ask for: the time since the last poll, rounded up,
    plus an overlap for index lag (Jira's search index trails writes a little)."""
    return math.ceil(max(0.0, elapsed_s) / 60) + overlap_minutes


def incremental_jql(jql: str, minutes: int | None) -> str:
    """The configured condition, updated in the last ``minutes`` (all of it when
    None), newest first: an issue edited while we page moves to a page already
    read, so the pages after it shift by one and repeat an issue rather than skip one."""
    condition, _ = split_order_by(jql)
    clauses = [f"({condition})"] if condition else []
    if minutes is not None:
        clauses.append(f'updated >= "-{minutes}m"')
    return (" AND ".join(clauses) + " ORDER BY updated DESC").lstrip()
