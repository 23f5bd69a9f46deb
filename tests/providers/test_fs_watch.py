"""fs-watch on real files and a real Redis: created, modified and deleted files are
published once each, including what changed while the connector was down."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from framework.core import ConfigError, SourceError, SystemClock
from framework.core.logs import get_logger
from framework.polling import ConnectorConfig, ConnectorContext, Lease, StateStore
from providers.fs import create_fs_watch_connector

STREAM = "raw-input-signals"


async def connector_for(redis: Redis, root: Path, **provider: Any) -> Any:
    config = ConnectorConfig(name="inbox", type="fs-watch",
                             provider_config={"path": str(root), "debounceMs": 50, **provider})
    lease = Lease(redis, "inbox", ttl_s=30)
    await redis.delete(lease.key)  # a new process takes over
    assert await lease.try_acquire()
    context = ConnectorContext(store=StateStore(redis, config, lease, clock=SystemClock()),
                               clock=SystemClock(), logger=get_logger(connector="inbox"))
    return create_fs_watch_connector(config, context)


async def events(redis: Redis) -> list[tuple[str, str]]:
    """(event, path) of every entry, in order."""
    found = []
    for _, fields in await redis.xrange(STREAM):
        value = orjson.loads(fields["payload"])["value"]
        found.append((value["event"], value["path"]))
    return found


async def windows_until(connector: Any, redis: Redis, count: int, limit: int = 30) -> None:
    """Run windows (as the worker does) until ``count`` entries are in the stream."""
    for _ in range(limit):
        await connector.poll()
        if await redis.xlen(STREAM) >= count:
            return
    raise AssertionError(f"{count} entries expected, got {await events(redis)}")


async def test_created_modified_and_deleted_files_are_published_once_each(
    redis: Redis, tmp_path: Path,
) -> None:
    connector = await connector_for(redis, tmp_path)
    (tmp_path / "a.csv").write_text("1")
    await windows_until(connector, redis, 1)

    (tmp_path / "a.csv").write_text("1,2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("x")
    await windows_until(connector, redis, 3)
    (tmp_path / "a.csv").unlink()
    await windows_until(connector, redis, 4)
    await connector.poll()  # nothing more

    assert await events(redis) == [("created", "a.csv"), ("modified", "a.csv"),
                                   ("created", "sub/b.csv"), ("deleted", "a.csv")]
    payload = orjson.loads((await redis.xrange(STREAM))[0][1]["payload"])
    assert payload["value"]["size"] == 1 and payload["nodeId"] == "inbox"
    assert payload["metadata"] == {"root": str(tmp_path)}
    await connector.aclose()


async def test_changes_made_while_the_connector_was_down_are_published_at_start(
    redis: Redis, tmp_path: Path,
) -> None:
    (tmp_path / "kept.txt").write_text("k")
    (tmp_path / "gone.txt").write_text("g")
    first = await connector_for(redis, tmp_path)
    await windows_until(first, redis, 2)
    await first.aclose()

    (tmp_path / "gone.txt").unlink()
    (tmp_path / "new.txt").write_text("n")
    second = await connector_for(redis, tmp_path)
    await second.poll()  # the first window diffs at once

    assert sorted((await events(redis))[2:]) == [("created", "new.txt"), ("deleted", "gone.txt")]
    await second.aclose()


@pytest.mark.slow
async def test_a_crash_mid_commit_loses_and_repeats_nothing(redis: Redis, tmp_path: Path) -> None:
    for i in range(3000):
        (tmp_path / f"f{i:04d}").write_text(str(i))
    first = await connector_for(redis, tmp_path)
    window = asyncio.create_task(first.poll())
    while True:  # until the first chunk is committed
        if await redis.xlen(STREAM) or window.done():
            break
        await asyncio.sleep(0.001)
    window.cancel()  # as kill -9: whatever chunks were committed stay, the rest did not happen
    await asyncio.gather(window, return_exceptions=True)
    await first.aclose()

    second = await connector_for(redis, tmp_path)
    await windows_until(second, redis, 3000)
    paths = [path for _, path in await events(redis)]
    assert sorted(paths) == sorted(f"f{i:04d}" for i in range(3000))  # each exactly once
    await second.aclose()


async def test_only_the_configured_events_globs_and_depth(redis: Redis, tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "x.csv").write_text("1")
    (tmp_path / "note.txt").write_text("1")
    connector = await connector_for(redis, tmp_path, events=["created", "deleted"],
                                    globs=["*.csv"], recursive=False)
    (tmp_path / "top.csv").write_text("1")
    await windows_until(connector, redis, 1)
    (tmp_path / "top.csv").write_text("1,2")  # modified: not published
    await connector.poll()
    (tmp_path / "top.csv").unlink()
    await windows_until(connector, redis, 2)

    assert await events(redis) == [("created", "top.csv"), ("deleted", "top.csv")]
    await connector.aclose()


async def test_with_content_hashing_a_touch_is_not_a_change(redis: Redis, tmp_path: Path) -> None:
    target = tmp_path / "same.bin"
    target.write_bytes(b"payload")
    connector = await connector_for(redis, tmp_path, hashContent=True)
    await windows_until(connector, redis, 1)

    os.utime(target, ns=(1, 1))  # new mtime, same content
    await connector.poll()
    await connector.poll()

    [(_, entry)] = await redis.xrange(STREAM)
    assert orjson.loads(entry["payload"])["value"]["sha256"].startswith("239f59ed55e7")
    await connector.aclose()


async def test_a_vanished_directory_fails_the_window_clearly_then_recovers(
    redis: Redis, tmp_path: Path,
) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    connector = await connector_for(redis, root)
    await connector.poll()
    root.rmdir()

    with pytest.raises(SourceError, match=f"inbox: {root} is not a directory"):
        for _ in range(10):
            await connector.poll()
    root.mkdir()
    (root / "back.txt").write_text("b")
    await windows_until(connector, redis, 1)
    assert await events(redis) == [("created", "back.txt")]
    await connector.aclose()


async def test_more_files_than_max_files_is_an_error_not_a_memory_blowup(
    redis: Redis, tmp_path: Path,
) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x")
    connector = await connector_for(redis, tmp_path, maxFiles=3)

    with pytest.raises(SourceError, match="more than maxFiles=3"):
        await connector.poll()
    assert await redis.xlen(STREAM) == 0
    await connector.aclose()


@pytest.mark.parametrize(("provider", "message"), [
    ({"path": "relative/dir"}, "providerConfig.path: Value error, must be an absolute path"),
    ({"events": ["modified"]}, "providerConfig.events: Value error, must include 'created'"),
    ({"events": ["renamed"]}, "providerConfig.events.0"),
    ({"debounceMs": -1}, "providerConfig.debounceMs"),
])
async def test_config_errors_name_the_field(
    redis: Redis, tmp_path: Path, provider: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ConfigError, match="fs-watch connector inbox: ") as raised:
        await connector_for(redis, tmp_path, **provider)
    assert message in str(raised.value)


async def test_a_file_name_that_is_not_utf8_is_reported_and_never_stops_the_others(
    redis: Redis, tmp_path: Path,
) -> None:
    os.close(os.open(os.fsencode(tmp_path) + b"/bad-\xff.csv", os.O_CREAT | os.O_WRONLY))
    (tmp_path / "good.csv").write_text("1")
    connector = await connector_for(redis, tmp_path)

    summary = await connector.poll()

    assert (summary.published, summary.failed) == (1, 1)
    assert await events(redis) == [("created", "good.csv")]
    await connector.aclose()
