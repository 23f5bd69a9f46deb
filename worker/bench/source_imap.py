"""``bench sources --source imap``: mails/s from a private Dovecot into the stream,
through ``email-imap`` (UID search, sizes, bodies, parsing into events with their
parts, the fenced append with UIDVALIDITY and the last UID) against a bare
aioimaplib loop doing the least the same job needs (one SELECT and UID SEARCH, then
UID FETCH of the bodies 50 at a time, the connector's batch, and one pipelined XADD
of the raw mails per batch).

Each loop drains ``mails`` mails delivered into the INBOX of a Dovecot of its own
before it starts (so both pay Dovecot's first indexing of the folder), timed from
the loop's start to the last mail in the stream. The connector's ``pollIntervalMs``
is 1 ms: it searches the folder again before each batch, as it does when a
backlog is drained, and the interval does not throttle it.
"""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage

import aioimaplib
from redis.asyncio import Redis

from framework.core import create_redis
from framework.polling import ConnectorConfig
from framework.testing import Dovecot
from providers.imap import create_imap_connector
from worker.bench.leased import fresh_connector_context
from worker.bench.stats import Row

STREAM = "raw-input-signals"
BATCH = 50  # mails per fetch: email-imap's batch
DEADLINE_S = 30.0


def measure(params: Row) -> list[Row]:
    """One run: ``rate`` (the connector) and ``bare_rate`` (mails/s)."""
    mails = int(params["mails"])
    rates = asyncio.run(_measure(mails, params["redis_url"]))
    return [{"mode": "drain", "mails": mails, **rates}]


async def _measure(mails: int, redis_url: str) -> Row:
    redis = create_redis(redis_url)
    try:
        with Dovecot() as imap:
            _deliver(imap, mails)
            await redis.delete(STREAM)
            connector_rate = await _drain_connector(redis, imap, mails)
        with Dovecot() as imap:
            _deliver(imap, mails)
            await redis.delete(STREAM)
            bare_rate = await _drain_bare(redis, imap, mails)
    finally:
        await redis.aclose()
    return {"rate": connector_rate, "bare_rate": bare_rate}


def _deliver(imap: Dovecot, mails: int) -> None:
    for number in range(mails):
        message = EmailMessage()
        message["From"] = "sensors@example.org"
        message["To"] = "ops@example.org"
        message["Subject"] = f"reading {number}"
        message["Message-ID"] = f"<reading-{number}@example.org>"
        message.set_content(f"temperature 21.{number % 10} C at station {number % 17}")
        imap.deliver(bytes(message))


async def _drain_connector(redis: Redis, imap: Dovecot, mails: int) -> float:
    config = ConnectorConfig.model_validate({
        "name": "bench-imap", "type": "email-imap", "pollIntervalMs": 1,
        "requestTimeoutMs": int(DEADLINE_S * 1000), "streamMaxLen": 10 * mails,
        "providerConfig": {"host": "127.0.0.1", "port": imap.port, "tls": False,
                           "username": imap.user, "password": imap.password}})
    context = await fresh_connector_context(redis, config, (":seen",))
    reader = create_imap_connector(config, context)
    try:
        started = time.perf_counter()
        while await redis.xlen(STREAM) < mails:
            summary = await reader.poll()
            assert summary.failed == 0, "email-imap: a mail failed during the bench"
        return mails / (time.perf_counter() - started)
    finally:
        await reader.aclose()


async def _drain_bare(redis: Redis, imap: Dovecot, mails: int) -> float:
    client = aioimaplib.IMAP4(host="127.0.0.1", port=imap.port, timeout=DEADLINE_S)
    started = time.perf_counter()
    await client.wait_hello_from_server()
    try:
        await client.login(imap.user, imap.password)
        await client.select("INBOX")
        found = await client.uid_search("ALL")
        uids = [u.decode() for line in found.lines[:-1] for u in bytes(line).split()
                if u.isdigit()]
        for start in range(0, len(uids), BATCH):
            response = await client.uid("fetch", ",".join(uids[start:start + BATCH]),
                                        "(UID BODY.PEEK[])")
            async with redis.pipeline(transaction=False) as pipe:
                for line in response.lines:
                    if isinstance(line, bytearray):  # a mail's literal
                        pipe.xadd(STREAM, {"payload": bytes(line)})
                await pipe.execute()
        elapsed = time.perf_counter() - started
        appended = await redis.xlen(STREAM)
        if appended != mails:
            raise RuntimeError(f"bare IMAP loop: {appended} of {mails} mails appended")
        return mails / elapsed
    finally:
        await client.logout()
