"""``connector-fleet consume`` (a stream consumer process) and ``consumers`` (consumer
groups: pending, lag, consumers; pruning dead consumers)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from framework.consuming import default_consumer_name, prune_idle_consumer
from framework.core import (
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_START_ID,
)
from worker.cli.output import Confirm, Console
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode
from worker.ops import GroupInfo, prunable_consumers, read_consumer_groups

if TYPE_CHECKING:
    from worker.cli.session import Subparsers

GROUP_COLUMNS = ("STREAM", "GROUP", "START", "PENDING", "LAG", "CONSUMER", "ITS PENDING",
                 "IDLE", "HEARTBEAT")


def add_consume_command(commands: Subparsers) -> None:
    consume = commands.add_parser(
        "consume", help="run a stream consumer (rules -> capabilities); run several to scale")
    consume.add_argument("--stream", dest="streams", action="append", default=[],
                         help="a stream to read (repeat; default: the streams the rules use)")
    consume.add_argument("--group", default=DEFAULT_CONSUMER_GROUP,
                         help=f"consumer group (default: {DEFAULT_CONSUMER_GROUP})")
    consume.add_argument("--consumer", default=None,
                         help="this consumer's name, unique in the group (default: HOST-PID)")
    consume.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                         help="entries held at once by this process "
                              f"(default: {DEFAULT_MAX_IN_FLIGHT})")
    consume.add_argument("--claim-idle-ms", type=int, default=DEFAULT_CLAIM_IDLE_MS,
                         help="visibility timeout: pending entries of a consumer silent that "
                              f"long are taken over (default: {DEFAULT_CLAIM_IDLE_MS})")
    consume.add_argument("--max-deliveries", type=int, default=DEFAULT_MAX_DELIVERIES,
                         help="deliveries before an entry is dead-lettered "
                              f"(default: {DEFAULT_MAX_DELIVERIES})")
    consume.add_argument("--order-by", default=None,
                         help="field (or payload path a.b) whose equal values run one at a "
                              "time, in stream order")
    consume.add_argument("--dead-letter-stream", default="{stream}:dlq",
                         help="dead-letter stream name; {stream} is replaced "
                              "(default: {stream}:dlq)")
    consume.add_argument("--start-id", default=os.environ.get("CONSUMER_START_ID",
                                                              DEFAULT_START_ID),
                         help="where a NEW group starts (an existing one keeps its position): "
                              "$ only entries added from now on, 0 the whole stream, or an "
                              "entry id (default: $CONSUMER_START_ID, else $)")
    consume.add_argument("--rules", default=None,
                         help="rules file (default: $RULES_PATH, else rules.json beside "
                              "connectors.json)")
    # Not "handler": that is the command's own (set_defaults).
    consume.add_argument("--handler", dest="event_handler", default=None,
                         help="MODULE:NAME of a handler factory called with the Redis client, "
                              "instead of the rules")
    consume.add_argument("--burst", action="store_true",
                         help="exit 0 once a read finds no new entry (after finishing the work)")
    consume.add_argument("--metrics-port", type=int, default=None,
                         help="serve the ops HTTP API on this port (default: $METRICS_PORT); "
                              "with --processes, child i serves it on PORT+i-1")
    consume.add_argument("--processes", type=int, default=1,
                         help="run N consumer processes (NAME-1..NAME-N, supervised: "
                              "restarted if they fail, SIGTERM drains all) (default: 1)")
    consume.set_defaults(handler=run_consume_command)


def add_consumers_command(commands: Subparsers) -> None:
    consumers = commands.add_parser("consumers", help="consumer groups: pending, lag, consumers")
    consumers.add_argument("--stream", dest="streams", action="append", default=None)
    consumers.add_argument("--json", action="store_true")
    consumers.add_argument("--prune-idle-ms", type=int, default=None, metavar="MS",
                           help="remove consumers idle that long with no pending entry and "
                                "no heartbeat (never one holding entries)")
    consumers.add_argument("--yes", action="store_true", help="prune without confirmation")
    consumers.set_defaults(handler=redis_command(_consumers))


def run_consume_command(args: argparse.Namespace) -> int:
    if args.processes > 1:
        from worker.consume import run_consume_processes

        commands = [child_consume_command(args, index) for index in range(args.processes)]
        return run_consume_processes(commands, config_path=args.fleet_config)
    if args.processes < 1:
        print(f"--processes {args.processes}: expected 1 or more", file=sys.stderr)
        return ExitCode.USAGE
    from worker.consume import ConsumeRequest, run_consume_process

    request = ConsumeRequest(
        streams=tuple(args.streams), handler=args.event_handler,
        rules_path=Path(args.rules) if args.rules else None,
        options={"group": args.group, "consumer": args.consumer or default_consumer_name(),
                 "max_in_flight": args.max_in_flight, "claim_idle_ms": args.claim_idle_ms,
                 "max_deliveries": args.max_deliveries, "order_by": args.order_by,
                 "dead_letter_stream": args.dead_letter_stream, "start_id": args.start_id,
                 "burst": args.burst})
    return run_consume_process(request, metrics_port=args.metrics_port,
                               config_path=args.fleet_config)


def child_consume_command(args: argparse.Namespace, index: int) -> list[str]:
    """The command line of child ``index`` (0-based) of ``consume --processes N``:
    the same options, its own consumer name and metrics port."""
    name = f"{args.consumer or default_consumer_name()}-{index + 1}"
    command = [sys.executable, "-c", "from worker.cli import connector_fleet; connector_fleet()"]
    if args.fleet_config:
        command += ["--config", args.fleet_config]
    command += ["consume", "--consumer", name, "--group", args.group,
                "--max-in-flight", str(args.max_in_flight),
                "--claim-idle-ms", str(args.claim_idle_ms),
                "--max-deliveries", str(args.max_deliveries),
                "--dead-letter-stream", args.dead_letter_stream, "--start-id", args.start_id]
    for stream in args.streams:
        command += ["--stream", stream]
    # One port each: $METRICS_PORT, inherited as is, would be taken by the first only.
    port = args.metrics_port if args.metrics_port is not None else os.environ.get("METRICS_PORT")
    optional = {"--order-by": args.order_by, "--rules": args.rules,
                "--handler": args.event_handler,
                "--metrics-port": None if port is None else str(int(port) + index)}
    command += [item for option, value in optional.items() if value is not None
                for item in (option, value)]
    return command + (["--burst"] if args.burst else [])


async def _consumers(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    if args.prune_idle_ms is not None:
        return await prune_consumers(redis, session.console, idle_ms=args.prune_idle_ms,
                                     confirm=session.confirm)
    return await show_consumers(redis, session.console, streams=args.streams,
                                as_json=args.json)


def group_rows(groups: Sequence[GroupInfo]) -> list[tuple[str, ...]]:
    """One row per consumer (a group without consumers gets one row of its own)."""
    rows: list[tuple[str, ...]] = []
    for g in groups:
        lag = "?" if g.lag is None else str(g.lag)
        if not g.consumers:
            rows.append((g.stream, g.name, g.start(), str(g.pending), lag, "-", "-", "-", "-"))
        for c in g.consumers:
            rows.append((g.stream, g.name, g.start(), str(g.pending), lag, c.name, str(c.pending),
                         f"{c.idle_ms / 1000:.1f}s", "live" if c.alive else "no heartbeat"))
    return rows


async def consumer_section(redis: Redis, console: Console) -> None:
    """The consumer groups part of ``connector-fleet status`` (nothing if there are none)."""
    groups = await read_consumer_groups(redis)
    if groups:
        console.line()
        console.table(GROUP_COLUMNS, group_rows(groups))


async def show_consumers(redis: Redis, console: Console, *, streams: Sequence[str] | None,
                         as_json: bool) -> int:
    """``connector-fleet consumers``: a table (or JSON) of groups and consumers."""
    groups = await read_consumer_groups(redis, streams=streams)
    if as_json:
        console.json([g.as_json() for g in groups])
    elif not groups:
        console.line("no consumer groups")
    else:
        console.table(GROUP_COLUMNS, group_rows(groups))
    return ExitCode.OK


async def prune_consumers(redis: Redis, console: Console, *, idle_ms: int,
                          confirm: Confirm) -> int:
    """Remove consumers with no pending entry, no heartbeat and idle >= ``idle_ms``;
    each is checked again and removed atomically."""
    candidates = prunable_consumers(await read_consumer_groups(redis), idle_ms=idle_ms)
    if not candidates:
        console.line("no consumer to prune")
        return ExitCode.OK
    names = ", ".join(str(candidate) for candidate in candidates)
    if not confirm(f"Remove {len(candidates)} idle consumer(s) without pending entries: "
                   f"{names}?"):
        console.problem("not pruned (confirm, or pass --yes)")
        return ExitCode.FAILURE
    for candidate in candidates:
        removed = await prune_idle_consumer(redis, candidate.stream, candidate.group,
                                            candidate.consumer, idle_ms=idle_ms)
        console.line(f"{'removed' if removed else 'kept (active again)'} {candidate}")
    return ExitCode.OK
