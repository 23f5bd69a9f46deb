"""``connector-fleet status|leases|lease release|config check|state|stream tail``.

Each command takes its dependencies (Redis client, settings, output) and
returns an exit code, so tests call them on a real Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

import orjson
from redis.asyncio import Redis

from framework.consuming import read_breakers
from framework.core import (
    LEASE_PREFIX,
    ConfigError,
    ConnectorKeys,
    InvalidEntriesError,
    KeyScheme,
    Secrets,
    Settings,
    SystemClock,
    lease_key,
)
from framework.polling import ConnectorRegistry, FleetConfig, load_fleet_config, read_lease
from worker.cli.connector_keys import configured_connectors, connector_of_lease_key, keys_of
from worker.cli.consumers import consumer_section
from worker.cli.output import Confirm, Console, seconds
from worker.cli.session import Session, command, redis_command
from worker.exit_codes import ExitCode
from worker.ops import fleet_status

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_fleet_commands(commands: Subparsers) -> None:
    """``status``, ``leases``, ``lease release``, ``config check``, ``state show|reset``
    and ``stream tail``."""
    status_ = commands.add_parser("status", help="one line per connector")
    status_.add_argument("--json", action="store_true")
    status_.set_defaults(handler=redis_command(
        lambda r, args, s: status(r, s.settings, s.console, as_json=args.json)))
    leases_ = commands.add_parser("leases", help="who holds which lease (and its exact key)")
    leases_.add_argument("--json", action="store_true")
    leases_.set_defaults(handler=redis_command(
        lambda r, args, s: leases(r, s.console, as_json=args.json, settings=s.settings)))
    lease = commands.add_parser("lease", help="lease operations")
    release = lease.add_subparsers(dest="lease_command", required=True).add_parser(
        "release", help="force release (redis-cli DEL lease:NAME)")
    release.add_argument("name")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    release.set_defaults(handler=redis_command(
        lambda r, args, s: release_lease(r, s.console, args.name, confirm=s.confirm,
                                         key=keys_of(s.settings, args.name).lease)))
    config = commands.add_parser("config", help="configuration")
    config.add_subparsers(dest="config_command", required=True).add_parser(
        "check", help="validate, then print the resolved configuration (secrets redacted)",
    ).set_defaults(handler=command(_config_check))
    _add_state_commands(commands)
    _add_stream_commands(commands)


def _add_state_commands(commands: Subparsers) -> None:
    state = commands.add_parser("state", help="connector:state:NAME")
    state_ops = state.add_subparsers(dest="state_command", required=True)
    show = state_ops.add_parser("show")
    show.add_argument("name")
    show.add_argument("--items", action="store_true", help="also list every item version")
    show.set_defaults(handler=redis_command(
        lambda r, args, s: state_show(r, s.console, args.name, items=args.items,
                                      configured=_configured_names(s.settings),
                                      keys=keys_of(s.settings, args.name))))
    reset = state_ops.add_parser("reset", help="forget the state: the next poll republishes")
    reset.add_argument("name")
    reset.add_argument("--yes", action="store_true")
    reset.set_defaults(handler=redis_command(
        lambda r, args, s: state_reset(r, s.console, args.name, confirm=s.confirm,
                                       keys=keys_of(s.settings, args.name))))


def _add_stream_commands(commands: Subparsers) -> None:
    stream = commands.add_parser("stream", help="streams")
    tail = stream.add_subparsers(dest="stream_command", required=True).add_parser(
        "tail", help="follow a stream, one JSON entry per line")
    tail.add_argument("stream")
    tail.add_argument("--from-start", action="store_true")
    tail.add_argument("--count", type=int, default=None, help="stop after N entries")
    tail.set_defaults(handler=redis_command(
        lambda r, args, s: stream_tail(r, s.console, args.stream, from_start=args.from_start,
                                       count=args.count)))


def _config_check(_: argparse.Namespace, session: Session) -> int:
    from providers.builtin import default_registry

    return config_check(session.settings, default_registry(), session.console)


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
    statuses = await fleet_status(redis, fleet, now_s=SystemClock().time(),
                                  scheme=settings.key_scheme)
    if as_json:
        console.json([s.as_json() for s in statuses])
        return ExitCode.OK
    rows = []
    for s in statuses:
        metrics = s.metrics or {}
        rows.append((
            s.config.name, s.config.type, "yes" if s.config.enabled else "no",
            s.lease_holder or "-", seconds(s.lease_ttl_ms),
            metrics.get("lastPollTime") or "-", metrics.get("lastSuccessTime") or "-",
            str(metrics.get("failedPolls", 0)), str(metrics.get("itemsPublished", 0)),
            ("healthy" if s.healthy else f"UNHEALTHY: {s.reason}") if s.config.enabled else "-",
        ))
    console.table(_STATUS_COLUMNS, rows)
    await consumer_section(redis, console)
    await _breaker_section(redis, console)
    return ExitCode.OK


async def _breaker_section(redis: Redis, console: Console) -> None:
    """Circuit breakers as each consumer process last published them (capabilities.breaker)."""
    breakers = await read_breakers(redis)
    if breakers:
        console.line()
        console.table(("BREAKER", "PROCESS", "STATE", "FAILURES", "CHANGED"),
               [(b["breaker"], b["owner"], b["state"], str(b["failures"]), b["updatedAt"])
                for b in breakers])


# -- leases -------------------------------------------------------------------------------

async def leases(redis: Redis, console: Console, *, as_json: bool,
                 settings: Settings | None = None) -> int:
    """Every held lease with its exact key: the configured connectors' keys (under the
    settings' KeyScheme), and any other ``lease:*`` key found (a removed connector)."""
    keys = {config.keys(settings.key_scheme).lease: name for name, config
            in configured_connectors(settings).items()} if settings else {}
    async for key in redis.scan_iter(match=f"{LEASE_PREFIX}*", count=500):
        keys.setdefault(str(key), connector_of_lease_key(str(key)))
    found = []
    for key, name in keys.items():
        info = await read_lease(redis, name, key=key)
        if info.holder is not None:
            found.append({"connector": name, "holder": info.holder, "ttlMs": info.ttl_ms,
                          "key": key})
    found.sort(key=lambda lease: str(lease["connector"]))
    if as_json:
        console.json(found)
    elif not found:
        console.line("no leases held")
    else:
        console.table(("CONNECTOR", "HOLDER", "TTL", "KEY"),
               [(str(f["connector"]), str(f["holder"]), seconds(cast(int | None, f["ttlMs"])),
                 str(f["key"])) for f in found])
    return ExitCode.OK


async def release_lease(redis: Redis, console: Console, name: str, *, confirm: Confirm,
                        key: str | None = None) -> int:
    key = key or lease_key(name)
    info = await read_lease(redis, name, key=key)
    if info.holder is None:
        console.line(f"{key} is not held")
        return ExitCode.OK
    if not confirm(f"Release {key} held by {info.holder}? A standby (or the next "
                   "start) takes over; the holder stops publishing."):
        console.problem("not released (confirm, or pass --yes)")
        return ExitCode.FAILURE
    deleted = await redis.delete(key)
    console.line(f"released {key} (was {info.holder})" if deleted else f"{key} was already gone")
    return ExitCode.OK


# -- config check ---------------------------------------------------------------------------

def config_check(settings: Settings, registry: ConnectorRegistry, console: Console) -> int:
    """Every problem of the configuration, or the resolved configuration; secrets (by
    key name, and every value a ${VAR} took from the environment) redacted."""
    try:
        fleet = load_fleet_config(settings.connectors_config_path)
        problems: list[str] = []
    except InvalidEntriesError as exc:  # go on checking the entries that parsed
        fleet = FleetConfig(connectors=exc.valid, source=str(settings.connectors_config_path),
                            secrets=exc.secrets or Secrets(), broken=exc.broken)
        problems = exc.problems
    except ConfigError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    problems += asyncio.run(registry.validate(fleet))
    problems += fleet.broken.values()
    if problems:
        console.problem(fleet.secrets.redact_text(
            f"{fleet.source}: invalid configuration:\n  " + "\n  ".join(problems)))
        return ExitCode.CONFIG
    console.json({"source": fleet.source,
                  "connectors": [c.redacted(fleet.secrets) for c in fleet.connectors.values()]})
    return ExitCode.OK


# -- state ----------------------------------------------------------------------------------

def _configured_names(settings: Settings) -> list[str]:
    """The connector names the configuration knows (even if some entries are invalid)."""
    try:
        fleet = load_fleet_config(settings.connectors_config_path)
    except InvalidEntriesError as exc:
        return sorted([*exc.valid, *exc.broken])
    except ConfigError:
        return []
    return sorted([*fleet.connectors, *fleet.broken])


async def state_show(redis: Redis, console: Console, name: str, *, items: bool,
                     configured: list[str] | None = None, keys: ConnectorKeys | None = None,
                     ) -> int:
    """The saved state of ``name``; exit 78 when no connector of that name is
    configured and none has state in Redis (a typo, most likely)."""
    keys = keys or KeyScheme().connector(name)
    fields = await redis.hgetall(keys.state)
    count = await redis.hlen(keys.versions)
    if configured is not None and name not in configured and not fields and not count:
        console.problem(f"connector {name}: unknown (no state in Redis; configured: "
                        f"{', '.join(configured) or 'none'})")
        return ExitCode.CONFIG
    result: dict[str, Any] = {"connector": name, "state": fields, "itemCount": count}
    if items:
        result["itemVersions"] = await redis.hgetall(keys.versions)
    console.json(result)
    return ExitCode.OK


async def state_reset(redis: Redis, console: Console, name: str, *, confirm: Confirm,
                      keys: ConnectorKeys | None = None) -> int:
    keys = keys or KeyScheme().connector(name)
    count = await redis.hlen(keys.versions)
    if not confirm(f"Reset the state of {name}? Its next poll republishes all items "
                   f"({count} known now)."):
        console.problem("not reset (confirm, or pass --yes)")
        return ExitCode.FAILURE
    await redis.delete(keys.state, keys.versions)
    console.line(f"reset {keys.state} ({count} item versions forgotten)")
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
