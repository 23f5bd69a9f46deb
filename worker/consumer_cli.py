"""Command lines of the stream consumers: ``consume``, ``consumers`` and ``dlq``.
Parsing only; the work is done by :mod:`worker.consume` and :mod:`worker.consumer_view`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from framework.consuming import default_consumer_name
from framework.core import (
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_CONSUMER_GROUP,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_IN_FLIGHT,
)
from worker.commands import Confirm, Console
from worker.exit_codes import ExitCode

CONSUMER_COMMANDS = frozenset({"consume", "consumers", "dlq"})


def add_consumer_commands(commands: Any) -> None:
    """Add ``consume``, ``consumers`` and ``dlq`` to ``connector-fleet``'s sub-parsers."""
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
    consume.add_argument("--start-id", default="$",
                         help="where a new group starts: $ new entries only (default), 0 all")
    consume.add_argument("--rules", default=None,
                         help="rules file (default: $RULES_PATH, else rules.json beside "
                              "connectors.json)")
    consume.add_argument("--handler", default=None,
                         help="MODULE:NAME of a handler factory called with the Redis client, "
                              "instead of the rules")
    consume.add_argument("--burst", action="store_true",
                         help="exit 0 once a read finds no new entry (after finishing the work)")
    consume.add_argument("--metrics-port", type=int, default=None,
                         help="serve the ops HTTP API on this port (default: $METRICS_PORT)")

    consumers = commands.add_parser("consumers", help="consumer groups: pending, lag, consumers")
    consumers.add_argument("--stream", dest="streams", action="append", default=None)
    consumers.add_argument("--json", action="store_true")
    consumers.add_argument("--prune-idle-ms", type=int, default=None, metavar="MS",
                           help="remove consumers idle that long with no pending entry and "
                                "no heartbeat (never one holding entries)")
    consumers.add_argument("--yes", action="store_true", help="prune without confirmation")

    dlq = commands.add_parser("dlq", help="dead letters of a stream")
    ops = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = _dlq_parser(ops, "list", "dead letters, oldest first, with reason and attempts")
    listing.add_argument("--count", type=int, default=100)
    listing.add_argument("--after", default=None, help="continue after this dead letter id")
    listing.add_argument("--json", action="store_true")
    _dlq_parser(ops, "show", "one dead letter in full").add_argument("id")
    replay = _dlq_parser(ops, "replay", "re-add to the stream and remove from the DLQ")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    purge = _dlq_parser(ops, "purge", "delete every dead letter of the stream")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _dlq_parser(ops: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = ops.add_parser(name, help=help_text)
    parser.add_argument("stream", help="the stream whose dead letters these are")
    parser.add_argument("--dead-letter-stream", default=None,
                        help="the dead-letter stream, if not STREAM:dlq")
    return parser


def run_consume_command(args: argparse.Namespace, *, config_path: str | None) -> int:
    from worker.consume import ConsumeRequest, run_consume_process

    request = ConsumeRequest(
        streams=tuple(args.streams), handler=args.handler,
        rules_path=Path(args.rules) if args.rules else None,
        options={"group": args.group, "consumer": args.consumer or default_consumer_name(),
                 "max_in_flight": args.max_in_flight, "claim_idle_ms": args.claim_idle_ms,
                 "max_deliveries": args.max_deliveries, "order_by": args.order_by,
                 "dead_letter_stream": args.dead_letter_stream, "start_id": args.start_id,
                 "burst": args.burst})
    return run_consume_process(request, metrics_port=args.metrics_port, config_path=config_path)


async def run_redis_command(redis: Redis, args: argparse.Namespace, console: Console,
                            confirm: Confirm) -> int:
    """``consumers`` and ``dlq ...`` on an open Redis client."""
    from worker.consumer_view import DeadLetterCommands, prune_consumers, show_consumers

    if args.command == "consumers" and args.prune_idle_ms is not None:
        return await prune_consumers(redis, console, idle_ms=args.prune_idle_ms, confirm=confirm)
    if args.command == "consumers":
        return await show_consumers(redis, console, streams=args.streams, as_json=args.json)
    letters = DeadLetterCommands(redis, console, args.stream,
                                 dead_letter_stream=args.dead_letter_stream)
    if args.dlq_command == "list":
        return await letters.list_letters(count=args.count, after=args.after, as_json=args.json)
    if args.dlq_command == "show":
        return await letters.show(args.id)
    if args.dlq_command == "replay":
        if not args.ids and not args.all:
            console.problem("dlq replay: give dead letter ids, or --all")
            return ExitCode.USAGE
        return await letters.replay(args.ids, every=args.all)
    return await letters.purge(confirm=confirm)
