"""``connector-fleet devices list|show|import|groups|maintenance|watch``: the device
registry and the absence watchdog (providers.devices). Parsing and printing only.

``add_devices_commands(commands)`` returns the ``devices`` sub-parsers so that other
device commands (``devices simulate``) can be added beside these."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from framework.consuming import parse_duration_s
from framework.core import SystemClock, configure_logging, get_logger, iso_utc
from providers.devices import (
    DEFAULT_EVENTS_STREAM,
    Device,
    DeviceGroups,
    DeviceKeys,
    DeviceRegistry,
    Watchdog,
    WatchdogSettings,
)
from providers.devices.registry_import import read_device_file
from worker.cli.device_simulator import add_simulate_command
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_devices_commands(commands: Subparsers) -> Subparsers:
    devices = commands.add_parser("devices", help="the device registry and absence watchdog")
    ops = devices.add_subparsers(dest="devices_command", required=True)
    listing = ops.add_parser("list", help="devices in id order (paged)")
    listing.add_argument("--group")
    listing.add_argument("--status", choices=["online", "absent", "unknown"])
    listing.add_argument("--after", default="", help="continue after this device id")
    listing.add_argument("--count", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=redis_command(_list))
    show = ops.add_parser("show", help="one device: group, tags, last seen, status")
    show.add_argument("id")
    show.set_defaults(handler=redis_command(_show))
    importing = ops.add_parser("import", help="register devices from a CSV or JSON file")
    importing.add_argument("file", type=Path)
    importing.add_argument("--format", choices=["csv", "json"], default=None)
    importing.set_defaults(handler=redis_command(_import))
    _add_group_commands(ops)
    _add_maintenance_commands(ops)
    watch = ops.add_parser("watch", help="run the absence watchdog (one lease holder sweeps)")
    watch.add_argument("--interval-s", type=float, default=0.25)
    watch.add_argument("--batch", type=int, default=500)
    watch.add_argument("--lease-ttl-s", type=float, default=10.0)
    watch.add_argument("--stream", default=None,
                       help="device events stream (default: $DEVICE_EVENTS_STREAM or "
                            f"{DEFAULT_EVENTS_STREAM})")
    watch.set_defaults(handler=redis_command(_watch))
    add_simulate_command(ops)
    return ops


def _add_group_commands(ops: Subparsers) -> None:
    groups = ops.add_parser("groups", help="per-group absence timeouts")
    group_ops = groups.add_subparsers(dest="groups_command", required=True)
    timeout = group_ops.add_parser("set-timeout", help="the absence timeout T of a group")
    timeout.add_argument("group")
    timeout.add_argument("--for", dest="duration", required=True, help="30m, 4h, 1800...")
    timeout.set_defaults(handler=redis_command(_set_timeout))
    group_ops.add_parser("list", help="groups with a timeout").set_defaults(
        handler=redis_command(_list_groups))


def _add_maintenance_commands(ops: Subparsers) -> None:
    windows = ops.add_parser("maintenance", help="maintenance windows: no absences meanwhile")
    window_ops = windows.add_subparsers(dest="maintenance_command", required=True)
    add = window_ops.add_parser("add", help="a window for a group")
    add.add_argument("group")
    add.add_argument("--start", default="now", help="ISO 8601 time (UTC if no offset) or now")
    add.add_argument("--for", dest="duration", required=True, help="2h, 30m, 1d...")
    add.add_argument("--reason", required=True)
    add.set_defaults(handler=redis_command(_add_window))
    listing = window_ops.add_parser("list", help="windows not yet over")
    listing.add_argument("--group")
    listing.set_defaults(handler=redis_command(_list_windows))
    remove = window_ops.add_parser("remove", help="end a window now")
    remove.add_argument("group")
    remove.add_argument("id")
    remove.set_defaults(handler=redis_command(_remove_window))


def _keys(args: argparse.Namespace, session: Session) -> DeviceKeys:
    stream = getattr(args, "stream", None) or os.environ.get("DEVICE_EVENTS_STREAM")
    return DeviceKeys(events_stream=stream or DEFAULT_EVENTS_STREAM)


def _registry(redis: Redis, args: argparse.Namespace, session: Session) -> DeviceRegistry:
    return DeviceRegistry(redis, clock=SystemClock(), keys=_keys(args, session))


def _seen(device: Device) -> str:
    return device.last_seen or "-"


async def _list(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        page = await _registry(redis, args, session).page(
            after=args.after, count=args.count, group=args.group, status=args.status)
    except ValueError as exc:
        session.console.problem(f"devices list: {exc}")
        return ExitCode.USAGE
    if args.json:
        session.console.json({"devices": [d.as_json() for d in page.devices],
                              "next": page.next_after})
        return ExitCode.OK
    session.console.table(("ID", "GROUP", "STATUS", "LAST SEEN", "TAGS"),
                          [(d.id, d.group, d.status, _seen(d), ",".join(d.tags))
                           for d in page.devices])
    if page.next_after:
        session.console.problem(f"more: --after {page.next_after}")
    return ExitCode.OK


async def _show(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        device = await _registry(redis, args, session).show(args.id)
    except ValueError as exc:
        session.console.problem(f"devices show: {exc}")
        return ExitCode.USAGE
    if device is None:
        session.console.problem(f"devices show: no device {args.id}")
        return ExitCode.FAILURE
    session.console.json(device.as_json())
    return ExitCode.OK


async def _import(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    batch = read_device_file(args.file, args.format)
    for problem in batch.problems:
        session.console.problem(f"devices import: {problem}")
    written = await _registry(redis, args, session).register_many(
        [(row.id, row.group, row.tags) for row in batch.rows])
    session.console.line(f"imported {written} devices; {len(batch.problems)} problems")
    return ExitCode.OK if not batch.problems else ExitCode.FAILURE


async def _set_timeout(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    timeout_s = parse_duration_s(args.duration)
    try:
        if timeout_s is None:
            raise ValueError(f"--for: expected a duration (90s, 30m, 4h), got {args.duration!r}")
        await DeviceGroups(redis, clock=SystemClock()).set_timeout(args.group, timeout_s)
    except ValueError as exc:
        session.console.problem(f"devices groups set-timeout: {exc}")
        return ExitCode.USAGE
    session.console.line(f"group {args.group}: absent after {timeout_s:g} s without heartbeat")
    return ExitCode.OK


async def _list_groups(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    timeouts = await DeviceGroups(redis, clock=SystemClock()).timeouts()
    session.console.table(("GROUP", "TIMEOUT"),
                          [(g, f"{ms / 1000:g}s") for g, ms in sorted(timeouts.items())])
    return ExitCode.OK


def _parse_start(raw: str) -> float:
    if raw == "now":
        return SystemClock().time()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--start: expected an ISO 8601 time or now, got {raw!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _add_window(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        start_s = _parse_start(args.start)
        length_s = parse_duration_s(args.duration)
        if length_s is None:
            raise ValueError(f"--for: expected a duration (2h, 30m), got {args.duration!r}")
        window = await DeviceGroups(redis, clock=SystemClock()).add_window(
            args.group, start_s=start_s, end_s=start_s + length_s, reason=args.reason,
            created_by=f"cli:{getpass.getuser()}")
    except ValueError as exc:
        session.console.problem(f"devices maintenance add: {exc}")
        return ExitCode.USAGE
    session.console.line(f"{window.id}: group {window.group} from "
                         f"{iso_utc(window.start_ms / 1000)} to {iso_utc(window.end_ms / 1000)}")
    return ExitCode.OK


async def _list_windows(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        windows = await DeviceGroups(redis, clock=SystemClock()).windows(args.group)
    except ValueError as exc:
        session.console.problem(f"devices maintenance list: {exc}")
        return ExitCode.USAGE
    session.console.table(("ID", "GROUP", "START", "END", "REASON"),
                          [(w.id, w.group, iso_utc(w.start_ms / 1000), iso_utc(w.end_ms / 1000),
                            w.reason) for w in windows])
    return ExitCode.OK


async def _remove_window(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        window = await DeviceGroups(redis, clock=SystemClock()).remove_window(args.group, args.id)
    except ValueError as exc:
        session.console.problem(f"devices maintenance remove: {exc}")
        return ExitCode.USAGE
    if window is None:
        session.console.problem(f"devices maintenance remove: no window {args.id} "
                                f"in group {args.group}")
        return ExitCode.FAILURE
    session.console.line(f"removed {window.id}")
    return ExitCode.OK


async def _watch(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        settings = WatchdogSettings(sweep_interval_s=args.interval_s, batch_size=args.batch,
                                    lease_ttl_s=args.lease_ttl_s)
    except ValueError as exc:
        session.console.problem(f"devices watch: {exc}")
        return ExitCode.USAGE
    configure_logging(session.settings.log_level, session.settings.log_format)
    watchdog = Watchdog(redis, clock=SystemClock(), keys=_keys(args, session), settings=settings)
    watchdog_log = get_logger(component="device_watchdog")
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # The handler only cancels: the finally below releases the lease.
        loop.add_signal_handler(signum, task.cancel if task else lambda: None)
    try:
        await watchdog.run()
    except asyncio.CancelledError:
        pass
    finally:
        await watchdog.release()
        watchdog_log.info("device_watchdog_stopped")
    return ExitCode.OK
