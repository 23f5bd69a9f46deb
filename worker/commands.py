"""``connector-fleet`` operator commands: status, leases, config check, state, stream tail.

Each command takes its dependencies (Redis client, settings, output) and
returns an exit code, so tests call them on a real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import orjson
from redis.asyncio import Redis

from framework.consuming import read_breakers
from framework.core import (
    LEASE_PREFIX,
    ConfigError,
    InvalidEntriesError,
    Settings,
    SystemClock,
    lease_key,
    state_key,
    versions_key,
)
from framework.polling import ConnectorRegistry, FleetConfig, load_fleet_config, read_lease
from worker.consumer_view import consumer_section
from worker.exit_codes import ExitCode
from worker.fleet_view import fleet_status

Confirm = Callable[[str], bool]


def ask_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


@dataclass
class Console:
    """Where commands write: results to ``out``, problems to ``err``."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def json(self, value: Any) -> None:
        self.line(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())

    def problem(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def load_fleet(settings: Settings, console: Console) -> FleetConfig | None:
    try:
        return load_fleet_config(settings.connectors_config_path)
    except ConfigError as exc:
        console.problem(str(exc))
        return None


# -- status -------------------------------------------------------------------------------

_STATUS_COLUMNS = ("NAME", "TYPE", "ENABLED", "LEASE HOLDER", "TTL", "LAST POLL",
                   "LAST SUCCESS", "FAILED", "PUBLISHED", "HEALTH")


async def status(redis: Redis, settings: Settings, console: Console, *, as_json: bool) -> int:
    fleet = load_fleet(settings, console)
    if fleet is None:
        return ExitCode.CONFIG
    statuses = await fleet_status(redis, fleet, now_s=SystemClock().time())
    if as_json:
        console.json([s.as_json() for s in statuses])
        return ExitCode.OK
    rows = []
    for s in statuses:
        metrics = s.metrics or {}
        rows.append((
            s.config.name, s.config.type, "yes" if s.config.enabled else "no",
            s.lease_holder or "-", _seconds(s.lease_ttl_ms),
            metrics.get("lastPollTime") or "-", metrics.get("lastSuccessTime") or "-",
            str(metrics.get("failedPolls", 0)), str(metrics.get("itemsPublished", 0)),
            ("healthy" if s.healthy else f"UNHEALTHY: {s.reason}") if s.config.enabled else "-",
        ))
    _table(console, _STATUS_COLUMNS, rows)
    await consumer_section(redis, console)
    await _breaker_section(redis, console)
    return ExitCode.OK


async def _breaker_section(redis: Redis, console: Console) -> None:
    """Circuit breakers as each consumer process last published them (capabilities.breaker)."""
    breakers = await read_breakers(redis)
    if breakers:
        console.line()
        _table(console, ("BREAKER", "PROCESS", "STATE", "FAILURES", "CHANGED"),
               [(b["breaker"], b["owner"], b["state"], str(b["failures"]), b["updatedAt"])
                for b in breakers])


# -- leases -------------------------------------------------------------------------------

async def leases(redis: Redis, console: Console, *, as_json: bool) -> int:
    found = []
    async for key in redis.scan_iter(match=f"{LEASE_PREFIX}*", count=500):
        name = str(key).removeprefix(LEASE_PREFIX)
        info = await read_lease(redis, name)
        if info.holder is not None:
            found.append({"connector": name, "holder": info.holder, "ttlMs": info.ttl_ms})
    found.sort(key=lambda lease: str(lease["connector"]))
    if as_json:
        console.json(found)
    elif not found:
        console.line("no leases held")
    else:
        _table(console, ("CONNECTOR", "HOLDER", "TTL"),
               [(str(f["connector"]), str(f["holder"]), _seconds(cast(int | None, f["ttlMs"])))
                for f in found])
    return ExitCode.OK


async def release_lease(redis: Redis, console: Console, name: str, *, confirm: Confirm) -> int:
    info = await read_lease(redis, name)
    if info.holder is None:
        console.line(f"lease:{name} is not held")
        return ExitCode.OK
    if not confirm(f"Release lease:{name} held by {info.holder}? A standby (or the next "
                   "start) takes over; the holder stops publishing."):
        console.problem("not released (confirm, or pass --yes)")
        return ExitCode.FAILURE
    deleted = await redis.delete(lease_key(name))
    console.line(f"released lease:{name} (was {info.holder})" if deleted
                 else f"lease:{name} was already gone")
    return ExitCode.OK


# -- config check ---------------------------------------------------------------------------

def config_check(settings: Settings, registry: ConnectorRegistry, console: Console) -> int:
    """Every problem of the configuration, or the resolved configuration (redacted)."""
    try:
        fleet = load_fleet_config(settings.connectors_config_path)
        problems: list[str] = []
    except InvalidEntriesError as exc:  # go on checking the entries that parsed
        fleet = FleetConfig(connectors=exc.valid, source=str(settings.connectors_config_path))
        problems = exc.problems
    except ConfigError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    problems += asyncio.run(registry.validate(fleet))
    if problems:
        console.problem(f"{fleet.source}: invalid configuration:\n  " + "\n  ".join(problems))
        return ExitCode.CONFIG
    console.json({"source": fleet.source,
                  "connectors": [c.redacted() for c in fleet.connectors.values()]})
    return ExitCode.OK


# -- state ----------------------------------------------------------------------------------

async def state_show(redis: Redis, console: Console, name: str, *, items: bool) -> int:
    fields = await redis.hgetall(state_key(name))
    count = await redis.hlen(versions_key(name))
    result: dict[str, Any] = {"connector": name, "state": fields, "itemCount": count}
    if items:
        result["itemVersions"] = await redis.hgetall(versions_key(name))
    console.json(result)
    return ExitCode.OK


async def state_reset(redis: Redis, console: Console, name: str, *, confirm: Confirm) -> int:
    count = await redis.hlen(versions_key(name))
    if not confirm(f"Reset the state of {name}? Its next poll republishes all items "
                   f"({count} known now)."):
        console.problem("not reset (confirm, or pass --yes)")
        return ExitCode.FAILURE
    await redis.delete(state_key(name), versions_key(name))
    console.line(f"reset connector:state:{name} ({count} item versions forgotten)")
    return ExitCode.OK


# -- stream tail ----------------------------------------------------------------------------

async def stream_tail(
    redis: Redis, console: Console, stream: str, *, from_start: bool, count: int | None,
    block_ms: int = 1000,
) -> int:
    """Print entries as JSON lines (payload decoded) until ``count`` or Ctrl-C."""
    last_id = "0-0" if from_start else "$"
    printed = 0
    while count is None or printed < count:
        batch = cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]],
            await redis.xread({stream: last_id}, block=block_ms, count=100),
        )
        for _, entries in batch:
            for entry_id, fields in entries:
                last_id = entry_id
                console.line(orjson.dumps(_entry_json(entry_id, fields)).decode())
                printed += 1
                if count is not None and printed >= count:
                    return ExitCode.OK
    return ExitCode.OK


def _entry_json(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": entry_id, **fields}
    if "payload" in fields:
        with contextlib.suppress(orjson.JSONDecodeError):  # not JSON: shown as it is
            entry["payload"] = orjson.loads(fields["payload"])
    return entry


# -- formatting -----------------------------------------------------------------------------

def _seconds(ttl_ms: int | None) -> str:
    return "-" if ttl_ms is None else f"{ttl_ms / 1000:.1f}s"


def _table(console: Console, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        console.line("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths,
                                                                               strict=True)).rstrip())

