"""``email_send`` against a real SMTP server (aiosmtpd), through the signed catalog's
pipeline: messages read back, every parameter error, a failing server (retries,
then the breaker), a failing postcondition (recorded, alerted), a redelivery that
does not send again, and the password never printed."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from framework.core import ConfigError, DeadLetterError
from framework.core.errors import CallFailedError, CircuitOpenError, RolledBackError
from framework.testing import ReplayServer, Reply, free_port
from providers.email import EmailActions, SmtpSettings
from providers.http import GuardedClient
from providers.outbox import EnvSecrets
from tests.providers.messaging_rig import FAST_POLICY, Rig, definition_path, safe_rig
from tests.providers.smtp_peer import SMTP_USER, SmtpPeer

PASSWORD = "s3cret-smtp-pass"
DEFINITION = definition_path("email", "email_send")
MESSAGE = {"to": ["ops@plant.test"], "from": "fleet@plant.test",
           "subject": "Pressure high on line 1", "text": "9.2 bar at 10:00"}


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpPeer]:
    with SmtpPeer(tmp_path) as peer:
        yield peer


@pytest.fixture
async def client() -> AsyncIterator[GuardedClient]:
    client = GuardedClient()
    yield client
    await client.aclose()


async def rig_for(redis: Redis, settings: SmtpSettings, client: GuardedClient,
                  env: dict[str, str] | None = None) -> Rig:
    actions = EmailActions(settings, client=client, secrets=EnvSecrets(env or {}),
                           policy=FAST_POLICY)
    return await safe_rig(redis, [actions.spec()], [DEFINITION])


def plain(peer: SmtpPeer) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=peer.port, security="none")


async def test_a_message_is_sent_and_read_back_with_html_bcc_and_attachments(
        redis: Redis, smtp: SmtpPeer, client: GuardedClient, replay: ReplayServer) -> None:
    replay.route("/reports/today.csv", Reply(body=b"t,bar\n10:00,9.2\n", content_type="text/csv"))
    rig = await rig_for(redis, plain(smtp), client)
    result = await rig.call("email_send", {
        **MESSAGE, "cc": ["lead@plant.test"], "bcc": ["audit@plant.test"],
        "html": "<p><b>9.2 bar</b> at 10:00</p>", "replyTo": "noc@plant.test",
        "attachments": [
            {"filename": "reading.json", "contentType": "application/json",
             "text": '{"bar": 9.2}'},
            {"filename": "raw.bin", "base64": base64.b64encode(b"\x00\x01\x02").decode()},
            {"filename": "today.csv", "contentType": "text/csv",
             "url": f"{replay.url}/reports/today.csv"},
        ]})

    [received] = smtp.received
    assert received.sender == "fleet@plant.test"
    assert received.recipients == ["ops@plant.test", "lead@plant.test", "audit@plant.test"]
    message = received.message
    assert message["Subject"] == "Pressure high on line 1"
    assert message["To"] == "ops@plant.test" and message["Cc"] == "lead@plant.test"
    assert message["Bcc"] is None  # an envelope recipient only
    assert message["Reply-To"] == "noc@plant.test"
    assert message["Message-ID"] == result["messageId"]
    assert message.get_body(("plain",)).get_content().strip() == "9.2 bar at 10:00"
    assert "<b>9.2 bar</b>" in message.get_body(("html",)).get_content()
    parts = {part.get_filename(): part for part in message.iter_attachments()}
    assert parts["reading.json"].get_content_type() == "application/json"
    assert parts["raw.bin"].get_content() == b"\x00\x01\x02"
    assert parts["today.csv"].get_content().replace("\r\n", "\n") == "t,bar\n10:00,9.2\n"
    assert result["accepted"] == received.recipients and result["refused"] == {}
    assert await rig.kinds() == ["executed"]


async def test_starttls_with_authentication_reads_the_password_from_the_environment(
        redis: Redis, tmp_path: Path, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    with SmtpPeer(tmp_path, security="starttls", password=PASSWORD) as peer:
        settings = SmtpSettings(host="127.0.0.1", port=peer.port, security="starttls",
                                username=SMTP_USER, ca_file=str(peer.cert))
        rig = await rig_for(redis, settings, client, {"SMTP_PASSWORD": PASSWORD})
        result = await rig.call("email_send", MESSAGE)
        assert len(peer.received) == 1
    assert PASSWORD not in str(result) and PASSWORD not in str(await rig.audit())
    assert PASSWORD not in capsys.readouterr().err


async def test_implicit_tls(redis: Redis, tmp_path: Path, client: GuardedClient) -> None:
    with SmtpPeer(tmp_path, security="tls") as peer:
        settings = SmtpSettings(host="127.0.0.1", port=peer.port, security="tls",
                                ca_file=str(peer.cert))
        rig = await rig_for(redis, settings, client)
        await rig.call("email_send", MESSAGE)
        assert [r.message["Subject"] for r in peer.received] == [MESSAGE["subject"]]


async def test_a_wrong_password_is_refused_without_retry_and_never_printed(
        redis: Redis, tmp_path: Path, client: GuardedClient,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "wrong-pass-1234"
    with SmtpPeer(tmp_path, security="starttls", password=PASSWORD) as peer:
        settings = SmtpSettings(host="127.0.0.1", port=peer.port, security="starttls",
                                username=SMTP_USER, ca_file=str(peer.cert))
        rig = await rig_for(redis, settings, client, {"SMTP_PASSWORD": wrong})
        with pytest.raises(DeadLetterError, match="refused the credentials: 535") as caught:
            await rig.call("email_send", MESSAGE)
        assert peer.received == []
    assert caught.value.attempts == 1
    assert wrong not in str(caught.value) and wrong not in str(await rig.audit())
    assert wrong not in capsys.readouterr().err


async def test_an_unset_password_variable_is_named(redis: Redis, smtp: SmtpPeer,
                                                   client: GuardedClient) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=smtp.port, security="none",
                            username=SMTP_USER)
    rig = await rig_for(redis, settings, client)
    with pytest.raises(DeadLetterError, match="environment variable SMTP_PASSWORD"):
        await rig.call("email_send", MESSAGE)


BAD_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"to": []}, "to"),
    ({"to": ["not-an-address"]}, "to"),
    ({"to": ["Ops <ops@plant.test>"]}, "to"),
    ({"to": ["ops@plant.test\r\nBcc: x@evil.test"]}, "to"),
    ({"cc": ["@plant.test"]}, "cc"),
    ({"bcc": ["ops@"]}, "bcc"),
    ({"from": "fleet"}, "from"),
    ({"replyTo": "noc at plant"}, "replyTo"),
    ({"subject": ""}, "subject"),
    ({"subject": "hi\r\nBcc: x@evil.test"}, "subject"),
    ({"text": None}, "give text, html or both"),
    ({"attachments": [{"filename": "a.txt"}]}, "exactly one of text, base64, url"),
    ({"attachments": [{"filename": "a.txt", "text": "x", "url": "http://h/a"}]},
     "exactly one of"),
    ({"attachments": [{"filename": "../etc/passwd", "text": "x"}]}, "filename"),
    ({"attachments": [{"filename": "a", "base64": "%%%"}]}, "base64"),
    ({"attachments": [{"filename": "a", "text": "x", "contentType": "text"}]}, "contentType"),
    ({"attachments": [{"filename": "a", "url": "file:///etc/passwd"}]}, "url"),
    ({"priority": "high"}, "priority"),
]


@pytest.mark.parametrize(("change", "named"), BAD_PARAMS)
async def test_every_parameter_error_names_the_parameter_and_sends_nothing(
        redis: Redis, smtp: SmtpPeer, client: GuardedClient, change: dict[str, Any],
        named: str) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    params = {**MESSAGE, **change}
    if change.get("text", "") is None:
        del params["text"]
    with pytest.raises(DeadLetterError, match="email_send params") as caught:
        await rig.call("email_send", params)
    assert named in str(caught.value)
    assert caught.value.attempts == 1
    assert smtp.received == []


async def test_a_server_that_is_gone_is_retried_then_the_breaker_opens(
        redis: Redis, client: GuardedClient) -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), security="none")
    rig = await rig_for(redis, settings, client)
    # 1 attempt + 2 retries, each counted by the breaker (open after 3 failures).
    with pytest.raises(CallFailedError, match="after 3 attempts") as caught:
        await rig.call("email_send", MESSAGE)
    assert "smtp://127.0.0.1" in str(caught.value)
    with pytest.raises(CircuitOpenError):
        await rig.call("email_send", MESSAGE)
    assert await rig.kinds() == ["failed"]  # the refused call never reached the handler


async def test_a_busy_server_451_is_retried(redis: Redis, smtp: SmtpPeer,
                                            client: GuardedClient) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    with pytest.raises(CallFailedError, match="451"):
        await rig.call("email_send", {**MESSAGE, "to": ["ops@busy.test"]})


async def test_a_refused_recipient_fails_the_postcondition_recorded_and_alerted(
        redis: Redis, smtp: SmtpPeer, client: GuardedClient) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    with pytest.raises(RolledBackError):
        await rig.call("email_send", {**MESSAGE, "to": ["ops@plant.test", "old@refused.test"]})
    assert [r.recipients for r in smtp.received] == [["ops@plant.test"]]
    [failed] = [r for r in await rig.audit() if r.kind == "failed"]
    assert failed.body["stage"] == "postcondition"
    [alert] = await rig.alerts()
    assert "email_send" in alert["event"] and "postcondition" in alert["event"]


async def test_every_recipient_refused_is_a_dead_letter(redis: Redis, smtp: SmtpPeer,
                                                        client: GuardedClient) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    with pytest.raises(DeadLetterError, match="550"):
        await rig.call("email_send", {**MESSAGE, "to": ["old@refused.test"]})


async def test_a_redelivered_step_does_not_send_again(redis: Redis, smtp: SmtpPeer,
                                                      client: GuardedClient) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    first = await rig.call("email_send", MESSAGE, key="alerts:7-0:notify:send")
    again = await rig.call("email_send", MESSAGE, key="alerts:7-0:notify:send")
    assert len(smtp.received) == 1
    assert again["messageId"] == first["messageId"] and again["duplicate"] is True
    other = await rig.call("email_send", MESSAGE, key="alerts:8-0:notify:send")
    assert len(smtp.received) == 2 and other["messageId"] != first["messageId"]


async def test_an_attachment_url_outside_allow_hosts_is_refused(
        redis: Redis, smtp: SmtpPeer, client: GuardedClient, replay: ReplayServer) -> None:
    rig = await rig_for(redis, plain(smtp), client)
    params = {**MESSAGE, "attachments": [{"filename": "x", "url": f"{replay.url}/x"}]}
    with pytest.raises(DeadLetterError, match="target refused"):
        await rig.call("email_send", params, hosts=None)  # loopback not named: refused
    assert smtp.received == [] and replay.requests == []


async def test_an_attachment_that_fails_is_named(
        redis: Redis, smtp: SmtpPeer, client: GuardedClient, replay: ReplayServer) -> None:
    replay.route("/gone.pdf", Reply(404, {"error": "gone"}))
    rig = await rig_for(redis, plain(smtp), client)
    params = {**MESSAGE, "attachments": [{"filename": "r.pdf", "url": f"{replay.url}/gone.pdf"}]}
    with pytest.raises(DeadLetterError, match="attachment r.pdf .* answered 404"):
        await rig.call("email_send", params)
    assert smtp.received == []


def test_settings_from_the_environment_name_the_bad_variable() -> None:
    assert SmtpSettings.from_env({"SMTP_HOST": "mx", "SMTP_SECURITY": "tls"}).port == 465
    with pytest.raises(ConfigError, match="SMTP_SECURITY"):
        SmtpSettings.from_env({"SMTP_SECURITY": "ssl"})
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        SmtpSettings.from_env({"SMTP_PORT": "25x"})


