"""email-imap against a private Dovecot and a real Redis: new mail published once,
resumed after the last UID, resynced on a new UIDVALIDITY without duplicates, and
nothing lost or repeated when the connector is killed again and again."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import ConfigError
from framework.polling import ConnectorConfig
from framework.testing import Dovecot, RedisServer
from providers.imap import create_imap_connector
from tests.process import ConnectorProcess, write_config
from tests.providers.push_rig import leased_context
from tests.silent_peer import silent_peer

STREAM = "raw-input-signals"


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    with Dovecot() as server:
        yield server


def mail(number: int, *, attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = "alerts@example.org"
    message["To"] = "ops@example.org"
    message["Subject"] = f"alert {number}"
    message["Message-ID"] = f"<alert-{number}@example.org>"
    message.set_content(f"body of alert {number}")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename=f"report-{number}.bin")
    return bytes(message)


def entry(imap: Dovecot, **provider: Any) -> dict[str, Any]:
    return {"name": "mailbox", "type": "email-imap", "pollIntervalMs": 100,
            "requestTimeoutMs": 3000, "leaseTtlSeconds": 2,
            "providerConfig": {"host": "127.0.0.1", "port": imap.port, "tls": False,
                               "username": imap.user, "password": imap.password, **provider}}


async def connector_for(redis: Redis, imap: Dovecot, **provider: Any) -> Any:
    config = ConnectorConfig.model_validate(entry(imap, **provider))
    return create_imap_connector(config, await leased_context(redis, config))


async def windows_until(connector: Any, redis: Redis, count: int, limit: int = 50) -> None:
    """Run windows (as the worker does) until ``count`` entries are in the stream."""
    for _ in range(limit):
        await connector.poll()
        if await redis.xlen(STREAM) >= count:
            return
    raise AssertionError(f"{count} entries expected, got {await subjects(redis)}")


async def subjects(redis: Redis) -> list[str]:
    return [orjson.loads(f["payload"])["value"]["subject"] for _, f in await redis.xrange(STREAM)]


async def test_new_mail_is_published_with_its_parts_and_marked_seen(
    redis: Redis, imap: Dovecot,
) -> None:
    imap.deliver(mail(1, attachment=b"small"))
    imap.deliver(mail(2, attachment=b"x" * 5000))
    connector = await connector_for(redis, imap, markSeen=True, maxAttachmentContentBytes=100)

    summary = await connector.poll()

    assert summary.published == 2 and await subjects(redis) == ["alert 1", "alert 2"]
    first, second = [orjson.loads(f["payload"]) for _, f in await redis.xrange(STREAM)]
    assert first["value"]["messageid"] == "<alert-1@example.org>"
    assert first["value"]["text"].strip() == "body of alert 1"
    [small] = first["value"]["attachments"]
    assert (small["name"], small["size"], small["content"]) == ("report-1.bin", 5, "c21hbGw=")
    [big] = second["value"]["attachments"]
    assert big["size"] == 5000 and "content" not in big and len(big["sha256"]) == 64
    assert first["nodeId"] == f"{imap.user}@127.0.0.1/INBOX"
    assert orjson.loads((await redis.hgetall("connector:state:mailbox"))["cursors"])[
        "lastUid"] == "2"
    assert len(list((imap.maildir / "cur").iterdir())) == 2  # Dovecot moves seen mail to cur
    assert all(name.endswith("S") for name in (p.name for p in (imap.maildir / "cur").iterdir()))

    imap.deliver(mail(3))
    await windows_until(connector, redis, 3)
    assert await subjects(redis) == ["alert 1", "alert 2", "alert 3"]
    await connector.aclose()


async def test_a_restart_resumes_after_the_last_uid(redis: Redis, imap: Dovecot) -> None:
    imap.deliver(mail(1))
    first = await connector_for(redis, imap)
    await first.poll()
    await first.aclose()
    imap.deliver(mail(2))

    second = await connector_for(redis, imap)
    await windows_until(second, redis, 2)
    await second.poll()

    assert await subjects(redis) == ["alert 1", "alert 2"]  # unseen, yet not twice
    await second.aclose()


async def test_a_new_uidvalidity_resyncs_without_publishing_twice(
    redis: Redis, imap: Dovecot,
) -> None:
    imap.deliver(mail(1))
    imap.deliver(mail(2))
    connector = await connector_for(redis, imap)
    await connector.poll()
    imap.stop()
    imap.forget_uids()
    imap.deliver(mail(3))
    imap.start()

    with pytest.raises(Exception, match="IMAP"):  # the old session is gone
        for _ in range(3):
            await connector.poll()
    summary = await connector.poll()  # reconnects, sees the new UIDVALIDITY, resyncs

    assert (summary.published, summary.skipped_unchanged) == (1, 2)
    assert await subjects(redis) == ["alert 1", "alert 2", "alert 3"]
    await connector.aclose()


async def test_a_mail_over_the_size_limit_is_kept_as_its_header_not_downloaded(
    redis: Redis, imap: Dovecot,
) -> None:
    imap.deliver(mail(1, attachment=b"y" * 20_000))
    imap.deliver(mail(2))
    connector = await connector_for(redis, imap, maxMessageBytes=10_000)

    summary = await connector.poll()

    assert (summary.published, summary.failed) == (1, 1)
    assert await subjects(redis) == ["alert 2"]
    [(_, rejected)] = await redis.xrange("connector:state:mailbox:rejected")
    assert "over maxMessageBytes=10000" in rejected["error"]
    assert "Subject: alert 1" in rejected["raw"] and "yyyy" not in rejected["raw"]
    await connector.aclose()


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    redis: Redis, imap: Dovecot,
) -> None:
    connector = await connector_for(redis, imap, password="not-the-password")

    with pytest.raises(Exception, match=f"IMAP login as {imap.user} refused") as raised:
        await connector.poll()
    assert "not-the-password" not in str(raised.value)
    await connector.aclose()


@pytest.mark.parametrize(("change", "message"), [
    ({"host": ""}, "host is required"),
    ({"port": 0}, "providerConfig.port"),
    ({"password": None}, "password is required"),
    ({"maxMessageBytes": 0}, "providerConfig.maxMessageBytes"),
    ({"starttls": True}, "providerConfig.starttls: unknown field"),
])
async def test_config_errors_name_the_field(
    redis: Redis, imap: Dovecot, change: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigError, match="email-imap connector mailbox: ") as raised:
        await connector_for(redis, imap, **change)
    assert message in str(raised.value)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_again_and_again_loses_and_repeats_no_mail(
    imap: Dovecot, redis_server: RedisServer, tmp_path: Path,
) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    config = write_config(tmp_path / "connectors.json", entry(imap, markSeen=True))
    total, delivered, rounds = 60, 0, 0
    chance = random.Random(7)
    while client.xlen(STREAM) < total and rounds < 40:
        process = ConnectorProcess("mailbox", redis_url=redis_server.url, config=config,
                                   log=tmp_path / f"run-{rounds}.log")
        for _ in range(10):
            if delivered < total:
                imap.deliver(mail(delivered))
                delivered += 1
        process.wait_for("push_source_started", timeout_s=60)
        time.sleep(chance.uniform(0.1, 2.0))  # anywhere in its work, commit included
        process.signal(signal.SIGKILL)
        process.close()
        rounds += 1
        client.delete("lease:mailbox")  # its TTL would free it; no need to wait
    ids = [orjson.loads(f["payload"])["value"]["messageid"] for _, f in client.xrange(STREAM)]
    assert len(ids) == total, f"{len(ids)} of {total} after {rounds} kills"
    assert len(set(ids)) == total
    client.close()


async def test_a_server_that_never_answers_fails_within_the_request_deadline(
    redis: Redis, imap: Dovecot,
) -> None:
    async with silent_peer() as peer:  # accepts, then says nothing: no greeting
        config = ConnectorConfig.model_validate({**entry(imap), "requestTimeoutMs": 500})
        config.provider_config["port"] = peer.port
        connector = create_imap_connector(config, await leased_context(redis, config))
        try:
            async with asyncio.timeout(5):  # the deadline, not the silent peer, ends it
                with pytest.raises(Exception, match="did not finish within requestTimeoutMs"):
                    await connector.poll()
        finally:
            await connector.aclose()
        assert peer.accepted  # it did connect: the deadline, not a refusal, ended the poll
