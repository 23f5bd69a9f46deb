"""email-imap with a backlog of more than a thousand new mails: every one reaches the
stream once (listing them all in one FETCH overflowed aioimaplib's recursive parser,
so the connector failed the same way at every window)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from framework.testing import Dovecot
from tests.providers.test_imap import connector_for, mail, windows_until

pytestmark = pytest.mark.slow  # 1,100 mails through Dovecot

STREAM = "raw-input-signals"
BACKLOG = 1100


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


@pytest.mark.timeout(120)
async def test_a_backlog_of_over_a_thousand_mails_is_drained_once_each(
    redis: Redis, imap: Dovecot,
) -> None:
    for number in range(BACKLOG):
        imap.deliver(mail(number))
    connector = await connector_for(redis, imap)
    try:
        await windows_until(connector, redis, BACKLOG, limit=400)
    finally:
        await connector.aclose()

    entries = await redis.xrange(STREAM)
    assert len(entries) == BACKLOG
    assert len({fields["item_id"] for _, fields in entries}) == BACKLOG
