"""The ``email-imap`` connector: new mail in one folder, as events.

The folder's UIDVALIDITY and the last UID published are the position, saved with
each batch in the fenced append: a restart or a failover resumes after the last
mail in the stream, with none lost and none twice. When the server changes
UIDVALIDITY (the folder was rebuilt, its UIDs mean something else), the connector
says so (``imap_uidvalidity_changed``) and resyncs from the folder's start; the
mails' Message-IDs, kept as dedupe keys for ``dedupeWindowMs``, stop those it
already published from being published again.

After a batch is in the stream it is optionally marked seen (``markSeen``) or moved
(``moveTo``). Those are conveniences, not the cursor: if the process dies between
the append and the marking, the mails stay unmarked but are not published again.

Every IMAP command has the connector's ``requestTimeoutMs`` as its deadline; a
mail over ``maxMessageBytes`` is not downloaded: its header is kept in the rejected
stream with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping
from typing import Any

import aioimaplib

from framework.core import Clock, Logger, SourceError
from framework.polling import Batch, ConnectorConfig
from providers.imap.message import Mail, MailLimits, mail_value, message_id
from providers.imap.settings import ImapConfig

_FETCH_HEADER = re.compile(rb"^\d+ FETCH \((?P<items>.*?)(?:\{\d+\})?$")
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")


class ImapSource:
    """A :class:`~framework.polling.PushSource` of mails (see the module docstring)."""

    def __init__(self, config: ConnectorConfig, settings: ImapConfig, clock: Clock,
                 logger: Logger) -> None:
        self._name = config.name
        self._settings = settings
        self._deadline_s = config.request_timeout_ms / 1000
        self._interval_s = config.poll_interval_ms / 1000
        self._clock = clock
        self._log = logger
        self._client: aioimaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._last_uid = 0
        self._next_check = 0.0

    @property
    def limits(self) -> MailLimits:
        settings = self._settings
        return MailLimits(settings.max_message_bytes, settings.max_text_bytes,
                          settings.max_attachment_content_bytes)

    async def start(self, positions: Mapping[str, str]) -> None:
        await self._connect()
        uidvalidity = await self._select()
        saved = positions.get("uidvalidity")
        self._last_uid = int(positions.get("lastUid", "0"))
        if saved and saved != uidvalidity:
            self._log.warning("imap_uidvalidity_changed", folder=self._settings.folder,
                              saved=saved, now=uidvalidity, resync_from_uid=1)
            self._last_uid = 0
        self._uidvalidity = uidvalidity
        self._next_check = 0.0

    async def _connect(self) -> None:
        """Opens the session (``stop`` closes it, also when this fails half-way)."""
        settings = self._settings
        if settings.tls:
            context = ssl.create_default_context(cafile=settings.ca_file)
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host=settings.host, port=settings.port, timeout=self._deadline_s,
                ssl_context=context)
        else:
            client = aioimaplib.IMAP4(host=settings.host, port=settings.port,
                                      timeout=self._deadline_s)
        self._client = client
        await self._within_deadline(client.wait_hello_from_server(), "connect")
        login = await self._within_deadline(
            client.login(settings.username, settings.password.get_secret_value()), "LOGIN")
        if login.result != "OK":
            raise SourceError(f"IMAP login as {settings.username} refused by "
                              f"{settings.host}:{settings.port}", connector=self._name)

    async def _select(self) -> str:
        folder = self._settings.folder
        response = await self._command("SELECT", self._session().select(folder))
        for line in response.lines:
            if match := _UIDVALIDITY.search(bytes(line)):
                return match.group(1).decode()
        raise SourceError(f"IMAP folder {folder!r}: SELECT gave no UIDVALIDITY",
                          connector=self._name)

    async def receive(self, max_messages: int, wait_s: float) -> Batch[Mail]:
        now = self._clock.monotonic()
        if now < self._next_check:  # the folder is searched once per poll interval
            await self._clock.sleep(min(wait_s, self._next_check - now))
            if self._clock.monotonic() < self._next_check:
                return Batch()
        self._next_check = self._clock.monotonic() + self._interval_s
        sizes = await self._new_mail_sizes(max_messages)
        if not sizes:
            return Batch()
        uids = sorted(sizes)
        mails = await self._fetch(uids, sizes)
        # Moves on in memory now; in Redis with the append. If that fails, the source
        # is started again from the saved position.
        self._last_uid = uids[-1]
        return Batch(mails, {"uidvalidity": self._uidvalidity, "lastUid": str(uids[-1])})

    async def _new_mail_sizes(self, max_messages: int) -> dict[int, int]:
        """UID -> size of the first ``max_messages`` mails after the last UID (that the
        search matches). Only those are listed: aioimaplib parses a response's lines
        recursively, and one FETCH answer of ~1,000 lines (a backlog) overflows it."""
        first = self._last_uid + 1
        criteria = f"UID {first}:*" + (f" {self._settings.search}"
                                       if self._settings.search else "")
        found = await self._command("UID SEARCH", self._session().uid_search(criteria))
        uids = sorted(int(u) for line in found.lines[:-1] for u in bytes(line).split()
                      if u.isdigit() and int(u) >= first)[:max_messages]
        # ("N:*" matches the last UID even below N.)
        if not uids:
            return {}
        listed = await self._command("UID FETCH", self._session().uid(
            "fetch", ",".join(map(str, uids)), "(UID RFC822.SIZE)"))
        sizes = {}
        for line in listed.lines:
            uid, size = _UID.search(bytes(line)), _SIZE.search(bytes(line))
            if uid and size and int(uid.group(1)) >= first:
                sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    async def _fetch(self, uids: list[int], sizes: Mapping[int, int]) -> list[Mail]:
        limit = self._settings.max_message_bytes
        small = [uid for uid in uids if sizes[uid] <= limit]
        bodies = await self._bodies(small, "BODY.PEEK[]")
        headers = await self._bodies([u for u in uids if u not in bodies], "BODY.PEEK[HEADER]")
        return [Mail(uid, sizes[uid], bodies[uid]) if uid in bodies
                else Mail(uid, sizes[uid], headers.get(uid, b""), too_big=True)
                for uid in uids]

    async def _bodies(self, uids: list[int], item: str) -> dict[int, bytes]:
        if not uids:
            return {}
        response = await self._command("UID FETCH", self._session().uid(
            "fetch", ",".join(map(str, uids)), f"(UID {item})"))
        found: dict[int, bytes] = {}
        uid: int | None = None
        for line in response.lines:
            if isinstance(line, bytearray) and uid is not None:
                found[uid] = bytes(line)  # the literal that follows its FETCH line
                uid = None
            elif (match := _FETCH_HEADER.match(bytes(line))) and (
                    number := _UID.search(match.group("items"))):
                uid = int(number.group(1))
        return found

    async def acknowledge(self, batch: Batch[Mail]) -> None:
        settings = self._settings
        if not batch.messages or not (settings.mark_seen or settings.move_to):
            return
        uids = ",".join(str(mail.uid) for mail in batch.messages)
        try:
            if settings.mark_seen:
                await self._command("UID STORE", self._session().uid(
                    "store", uids, "+FLAGS.SILENT", r"(\Seen)"))
            if settings.move_to:
                await self._command("UID MOVE", self._session().uid("move", uids,
                                                                    settings.move_to))
        except SourceError as exc:
            # The mails are in the stream and the position moved on: only the marking
            # is lost, they are not published again.
            self._log.warning("imap_marking_failed", uids=uids, error=str(exc))

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(TimeoutError, OSError, aioimaplib.Abort,
                                     aioimaplib.CommandTimeout):
                await asyncio.wait_for(client.logout(), self._deadline_s)
            # A LOGOUT that failed (a silent or vanished server) leaves the socket
            # open: it is closed here either way.
            transport = getattr(client.protocol, "transport", None)
            if transport is not None:
                transport.close()

    def event_value(self, mail: Mail) -> dict[str, Any]:
        return mail_value(mail, self.limits)

    def dedupe_key(self, mail: Mail) -> str | None:
        return message_id(mail) if not mail.too_big else None

    def _session(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise SourceError("IMAP session is closed", connector=self._name)
        return self._client

    async def _command(self, name: str, call: Any) -> Any:
        response = await self._within_deadline(call, name)
        if response.result != "OK":
            detail = b" ".join(bytes(line) for line in response.lines)[:300]
            raise SourceError(f"IMAP {name} on {self._settings.folder!r} failed: "
                              f"{response.result} {detail.decode(errors='replace')}",
                              connector=self._name)
        return response

    async def _within_deadline(self, call: Any, name: str) -> Any:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await call
        except TimeoutError:
            raise SourceError(f"IMAP {name} to {self._settings.host}:{self._settings.port} "
                              f"did not finish within requestTimeoutMs", connector=self._name
                              ) from None
        except (OSError, aioimaplib.Abort, aioimaplib.CommandTimeout) as exc:
            raise SourceError(f"IMAP {name} to {self._settings.host}:{self._settings.port} "
                              f"failed: {type(exc).__name__}: {exc}", connector=self._name
                              ) from None
