"""``bench sources --source fs``: file events/s into the stream, through ``fs-watch``
(the kernel's notification wakes a snapshot diff of the tree; each new file is
diffed, made an event and committed with its version, fenced) against a bare
watchfiles loop doing the least the same job needs (``awatch`` with the same
debounce, one pipelined XADD of each reported change per batch, no state).

Both watch an empty directory of their own; ``files`` small files, written
beforehand in a sibling directory, are then renamed into it one after the other
(each appears whole, once), timed from the first rename to the last file's event
in the stream.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import watchfiles
from redis.asyncio import Redis

from framework.core import cancel_and_wait, create_redis
from framework.polling import ConnectorConfig
from providers.fs import create_fs_watch_connector
from worker.bench.leased import fresh_connector_context
from worker.bench.stats import Row

STREAM = "raw-input-signals"
DEBOUNCE_MS = 50
DEADLINE_S = 120.0


def measure(params: Row) -> list[Row]:
    """One run: ``rate`` (the connector) and ``bare_rate`` (events/s)."""
    files = int(params["files"])
    rates = asyncio.run(_measure(files, params["redis_url"]))
    return [{"mode": "create", "files": files, **rates}]


async def _measure(files: int, redis_url: str) -> Row:
    redis = create_redis(redis_url)
    top = Path(tempfile.mkdtemp(prefix="connector-fleet-bench-fs-"))
    try:
        await redis.delete(STREAM)
        connector_rate = await _connector_rate(redis, top / "connector", files)
        await redis.delete(STREAM)
        bare_rate = await _bare_rate(redis, top / "bare", files)
    finally:
        await redis.aclose()
        shutil.rmtree(top, ignore_errors=True)
    return {"rate": connector_rate, "bare_rate": bare_rate}


def _prepare(root: Path, files: int) -> list[tuple[Path, Path]]:
    """The watched directory (empty) and, beside it, the files to move into it."""
    staged = root.with_name(root.name + "-staged")
    root.mkdir()
    staged.mkdir()
    moves = []
    for number in range(files):
        source = staged / f"reading-{number:06d}.csv"
        source.write_text(f"station,{number % 17}\ntemperature,21.{number % 10}\n")
        moves.append((source, root / source.name))
    return moves


def _move_all(moves: list[tuple[Path, Path]]) -> None:
    for source, target in moves:
        source.rename(target)


async def _connector_rate(redis: Redis, root: Path, files: int) -> float:
    moves = _prepare(root, files)
    config = ConnectorConfig.model_validate({
        "name": "bench-fs", "type": "fs-watch", "streamMaxLen": 10 * files,
        "providerConfig": {"path": str(root), "debounceMs": DEBOUNCE_MS,
                           "maxFiles": 10 * files}})
    context = await fresh_connector_context(redis, config, (":versions",))
    connector: Any = create_fs_watch_connector(config, context)
    try:
        await connector.poll()  # the watch runs, the first (empty) snapshot is taken
        await asyncio.sleep(0.2)  # inotify's watches are in place before the first move
        started = time.perf_counter()
        mover = asyncio.create_task(asyncio.to_thread(_move_all, moves))
        async with asyncio.timeout(DEADLINE_S):
            while await redis.xlen(STREAM) < files:
                summary = await connector.poll()
                assert summary.failed == 0, "fs-watch: a file failed during the bench"
        elapsed = time.perf_counter() - started
        await mover
        return files / elapsed
    finally:
        await connector.aclose()


async def _bare_rate(redis: Redis, root: Path, files: int) -> float:
    moves = _prepare(root, files)
    stop = asyncio.Event()
    seen: set[str] = set()
    watching = asyncio.Event()

    async def watch() -> None:
        # yield_on_timeout: an empty first set says the watcher is in place.
        async for changes in watchfiles.awatch(root, watch_filter=None, debounce=DEBOUNCE_MS,
                                               step=20, rust_timeout=100,
                                               yield_on_timeout=True, stop_event=stop):
            watching.set()
            if not changes:
                continue
            async with redis.pipeline(transaction=False) as pipe:
                for change, path in changes:
                    pipe.xadd(STREAM, {"change": change.name, "path": path})
                await pipe.execute()
            seen.update(path for change, path in changes if change == watchfiles.Change.added)
            if len(seen) >= files:
                return

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(DEADLINE_S):
            await watching.wait()
            started = time.perf_counter()
            await asyncio.to_thread(_move_all, moves)
            await watcher
        return files / (time.perf_counter() - started)
    finally:
        stop.set()
        await cancel_and_wait(watcher)
