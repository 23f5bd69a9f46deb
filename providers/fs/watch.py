"""The ``fs-watch`` connector: files created, modified and deleted under ``path``.

Each window waits for the kernel to report a change (watchfiles: inotify on
Linux, debounced) and then diffs a fresh snapshot of the tree against the
versions already published: a file's relative path is its item id, its version
is its size and modification time (or its content hash with ``hashContent``).
The first window after a start diffs at once, so what changed while the
connector was down is published too. Diffing snapshots rather than relaying the
kernel's events is what makes a crash harmless: the state says what was
published, the disk says what is, the difference is published in one fenced
commit.

A deleted file is published as a tombstone (version ``deleted``) and stays in
the state with that version until a file appears at its path again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import watchfiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from framework.core import Logger, SourceError, cancel_and_wait
from framework.polling import (
    ConnectorConfig,
    ConnectorContext,
    ConnectorState,
    FetchResult,
    PollingConnector,
    PollSummary,
    SourceParts,
    UniversalPollingConnector,
    parse_provider_config,
    source_event,
)
from providers.fs.snapshot import FileState, SnapshotRules, take_snapshot

DELETED = "deleted"
Kind = Literal["created", "modified", "deleted"]
KINDS: tuple[Kind, ...] = ("created", "modified", "deleted")


class FsWatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    path: Path
    events: list[Kind] = Field(default_factory=lambda: list(KINDS))
    globs: list[str] = Field(default_factory=list)
    recursive: bool = True
    hash_content: bool = False
    max_hash_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_files: int = Field(100_000, gt=0)
    debounce_ms: int = Field(200, ge=0, le=60_000)
    # A snapshot at least this often even without a notification: the kernel's queue
    # can overflow, and a directory removed and made again is no longer watched.
    rescan_interval_ms: int = Field(60_000, gt=0)

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError(f"must be an absolute path (got {str(path)!r})")
        return path

    @field_validator("events")
    @classmethod
    def _tracks_new_files(cls, events: list[Kind]) -> list[Kind]:
        # A file is tracked from the event that reports it: without "created" a new
        # file would never be known, and its changes never reported.
        if "created" not in events:
            raise ValueError("must include 'created' (a new file is how tracking starts)")
        return events

    def rules(self) -> SnapshotRules:
        return SnapshotRules(root=self.path, globs=tuple(self.globs), recursive=self.recursive,
                             hash_content=self.hash_content, max_hash_bytes=self.max_hash_bytes,
                             max_files=self.max_files)


class DirectoryWatch:
    """The kernel's change notifications as one flag: set when anything changed
    since the last snapshot. Runs only while the connector holds the lease."""

    def __init__(self, settings: FsWatchConfig, logger: Logger) -> None:
        self._settings = settings
        self._log = logger
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stop.clear()
        self._changed.set()  # the first snapshot is due at once
        self._task = asyncio.create_task(self._watch(), name="fs-watch")

    @property
    def running(self) -> bool:
        """False before start, after stop, and once the watcher died (its directory
        was removed): the next window starts it again."""
        return self._task is not None and not self._task.done()

    async def changes(self, wait_s: float) -> bool:
        """Whether something changed, waiting at most ``wait_s``; clears the flag."""
        try:
            await asyncio.wait_for(self._changed.wait(), wait_s)
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    async def _watch(self) -> None:
        settings = self._settings
        try:
            async for _ in watchfiles.awatch(settings.path, watch_filter=None,
                                             debounce=settings.debounce_ms or 1, step=20,
                                             recursive=settings.recursive,
                                             stop_event=self._stop):
                self._changed.set()
        except Exception as exc:  # the directory went away: snapshots report it
            self._log.warning("fs_watch_stopped", error=f"{type(exc).__name__}: {exc}")
            self._changed.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await cancel_and_wait(self._task)
            self._task = None


class FsWatchConnector:
    """A :class:`UniversalPollingConnector` whose polls are windows that wait for
    the watch; ``suspend`` (lease lost) stops the watch, so the worker runs its
    windows back to back (:class:`~framework.polling.PushingConnector`)."""

    def __init__(self, config: ConnectorConfig, context: ConnectorContext,
                 settings: FsWatchConfig) -> None:
        self._settings = settings
        self._watch = DirectoryWatch(settings, context.logger)
        self._window_s = min(1.0, config.poll_interval_ms / 1000)
        self._clock = context.clock
        self._last_snapshot_s = context.clock.monotonic()
        self._poller = UniversalPollingConnector[None, dict[str, Any], dict[str, Any]](
            config=config, store=context.store, logger=context.logger,
            parts=SourceParts(provider=None, fetcher=self._fetch, item_id=_path_of,
                              transformer=self._event, change_detector=_version_of))

    @property
    def name(self) -> str:
        return self._poller.name

    async def poll(self) -> PollSummary:
        if not self._watch.running:
            self._watch.start()
        return await self._poller.poll()

    async def _fetch(self, _: None, state: ConnectorState) -> FetchResult[dict[str, Any]]:
        rescan_due = self._last_snapshot_s + self._settings.rescan_interval_ms / 1000
        wait_s = max(0.0, min(self._window_s, rescan_due - self._clock.monotonic()))
        if not await self._watch.changes(wait_s) and self._clock.monotonic() < rescan_due:
            return FetchResult(not_modified=True)
        self._last_snapshot_s = self._clock.monotonic()
        try:
            snapshot = await asyncio.to_thread(take_snapshot, self._settings.rules(),
                                               connector=self._poller.name)
        except SourceError:
            await self._watch.stop()  # watched again, from scratch, by the next window
            raise
        return FetchResult(items=self._items(snapshot, state.item_versions), complete=True)

    def _items(self, snapshot: Mapping[str, FileState],
               known: Mapping[str, str]) -> list[dict[str, Any]]:
        """One item per file to publish or keep, plus a tombstone per known file that is
        gone; a kind the config does not publish keeps the version already known."""
        wanted = self._settings.events
        items = []
        for path, file in snapshot.items():
            previous = known.get(path)
            kind: Kind = "created" if previous in (None, DELETED) else "modified"
            version = file.version if kind in wanted or previous is None else previous
            items.append({"path": path, "kind": kind, "version": version, "file": file})
        for path, version in known.items():
            if path not in snapshot and (version == DELETED or DELETED in wanted):
                items.append({"path": path, "kind": DELETED, "version": DELETED, "file": None})
        return items

    def _event(self, item: dict[str, Any]) -> dict[str, Any]:
        file: FileState | None = item["file"]
        value: dict[str, Any] = {"event": item["kind"], "path": item["path"]}
        moment = None
        if file is not None:
            moment = datetime.fromtimestamp(file.mtime_ns / 1e9, UTC)
            value |= {"size": file.size, "modifiedAt": moment.isoformat()}
            if file.sha256:
                value["sha256"] = file.sha256
        return source_event(source="fs", value=value, node_id=self._poller.name,
                            timestamp=moment, metadata={"root": str(self._settings.path)})

    async def suspend(self) -> None:
        await self._watch.stop()

    async def aclose(self) -> None:
        await self._watch.stop()
        await self._poller.aclose()


def _path_of(item: dict[str, Any]) -> str:
    path = str(item["path"])
    try:
        path.encode()
    except UnicodeEncodeError:
        # os.walk keeps undecodable bytes as surrogates: such a name can be neither
        # an item id in Redis nor a value in JSON. Reported, and the others go on.
        shown = path.encode("utf-8", "backslashreplace").decode()
        raise ValueError(f"file name is not UTF-8: {shown}") from None
    return path


def _version_of(item: dict[str, Any]) -> str:
    return str(item["version"])


def create_fs_watch_connector(config: ConnectorConfig,
                              context: ConnectorContext) -> PollingConnector:
    return FsWatchConnector(config, context, parse_provider_config(FsWatchConfig, config))
