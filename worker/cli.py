"""Command lines: ``connector-run`` and ``connector-fleet``. Parsing only; the work
is done by :mod:`worker.process`, :mod:`worker.commands` and :mod:`worker.bench`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from redis.asyncio import Redis

from framework.core import UNAVAILABLE, Settings, create_redis, redact_url
from worker import commands
from worker.audit_cli import add_audit_commands, run_audit_command
from worker.catalog_cli import add_catalog_commands, run_catalog_command
from worker.consumer_cli import add_consumer_commands, run_consume_command, run_redis_command
from worker.exit_codes import ExitCode
from worker.rules_cli import add_rules_commands, run_rules_command


def connector_run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="connector-run",
        description="Run one connector: hold lease:NAME and poll into its Redis stream.",
    )
    parser.add_argument("name", nargs="?", default=os.environ.get("CONNECTOR_NAME"),
                        help="connector name (default: $CONNECTOR_NAME)")
    parser.add_argument("--once", action="store_true",
                        help="run one poll and exit (exit 75 if another instance holds the lease)")
    _add_process_options(parser)
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("a connector name is required (argument or CONNECTOR_NAME)")
    from worker.process import run_connector_process

    sys.exit(run_connector_process(
        args.name, once=args.once, metrics_port=args.metrics_port, config_path=args.config
    ))


def _add_process_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve the ops HTTP API on this port (default: $METRICS_PORT)")
    parser.add_argument("--config", default=None,
                        help="path of connectors.json (default: $CONNECTORS_CONFIG_PATH)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connector-fleet", description="Operate the fleet.")
    # Not "config": run-all's own --config would overwrite it (argparse sub-parsers).
    parser.add_argument("--config", dest="fleet_config", default=None,
                        help="path of connectors.json (default: $CONNECTORS_CONFIG_PATH)")
    commands_ = parser.add_subparsers(dest="command", required=True)

    run = commands_.add_parser("run", help="run one connector (same as connector-run)")
    run.add_argument("args", nargs=argparse.REMAINDER)
    run_all = commands_.add_parser("run-all", help="supervise every enabled connector")
    _add_process_options(run_all)
    run_all.add_argument("--in-process", action="store_true",
                         help="run every connector as a task of this one process "
                              "(less memory, less isolation)")

    status = commands_.add_parser("status", help="one line per connector")
    status.add_argument("--json", action="store_true")
    leases = commands_.add_parser("leases", help="who holds which lease:*")
    leases.add_argument("--json", action="store_true")
    lease = commands_.add_parser("lease", help="lease operations")
    lease_ops = lease.add_subparsers(dest="lease_command", required=True)
    release = lease_ops.add_parser("release", help="force release (redis-cli DEL lease:NAME)")
    release.add_argument("name")
    release.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    config = commands_.add_parser("config", help="configuration")
    config.add_subparsers(dest="config_command", required=True).add_parser(
        "check", help="validate, then print the resolved configuration (secrets redacted)")

    state = commands_.add_parser("state", help="connector:state:NAME")
    state_ops = state.add_subparsers(dest="state_command", required=True)
    show = state_ops.add_parser("show")
    show.add_argument("name")
    show.add_argument("--items", action="store_true", help="also list every item version")
    reset = state_ops.add_parser("reset", help="forget the state: the next poll republishes")
    reset.add_argument("name")
    reset.add_argument("--yes", action="store_true")

    stream = commands_.add_parser("stream", help="streams")
    tail = stream.add_subparsers(dest="stream_command", required=True).add_parser(
        "tail", help="follow a stream, one JSON entry per line")
    tail.add_argument("stream")
    tail.add_argument("--from-start", action="store_true")
    tail.add_argument("--count", type=int, default=None, help="stop after N entries")

    bench = commands_.add_parser("bench", help="benchmarks (not tests)")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    publish = bench_kinds.add_parser("publish", help="diff + transform + publish + state")
    publish.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    publish.add_argument("--changed-ratio", type=float, default=0.1)
    publish.add_argument("--redis-url", default=None,
                         help="Redis to use (default: a private redis-server on a free port)")
    fleet = bench_kinds.add_parser("fleet", help="run-all at scale: memory, CPU, jitter")
    fleet.add_argument("--connectors", type=int, nargs="+", default=[50, 200])
    fleet.add_argument("--modes", nargs="+", choices=["process", "in-process"],
                       default=["process", "in-process"])
    fleet.add_argument("--duration", type=float, default=30.0,
                       help="seconds measured once every connector polls")
    consume = bench_kinds.add_parser(
        "consume", help="events/s and latency of one consumer, against Celery and arq")
    consume.add_argument("--events", type=int, default=20_000,
                         help="events queued for the throughput run")
    consume.add_argument("--rates", type=int, nargs="+", default=[1_000, 10_000],
                         help="steady send rates (events/s) of the latency runs")
    consume.add_argument("--duration", type=float, default=10.0,
                         help="seconds of sending per latency run")
    consume.add_argument("--max-in-flight", type=int, default=64)
    consume.add_argument("--redis-url", default=None,
                         help="Redis to use (default: a private redis-server on a free port)")
    add_audit_commands(commands_)
    add_catalog_commands(commands_)
    add_consumer_commands(commands_)
    add_rules_commands(commands_)
    return parser


def connector_fleet(argv: Sequence[str] | None = None) -> None:
    args = _build_parser().parse_args(argv)
    if args.command == "run":
        connector_run(args.args)
    if args.command == "run-all":
        from worker.process import run_fleet_process

        sys.exit(run_fleet_process(metrics_port=args.metrics_port,
                                   config_path=args.config or args.fleet_config,
                                   in_process=args.in_process))
    if args.command == "consume":
        sys.exit(run_consume_command(args, config_path=args.fleet_config))
    if args.command == "bench":
        sys.exit(_bench(args))
    sys.exit(_operate(args))


def _bench(args: argparse.Namespace) -> int:
    if args.kind == "publish":
        from worker.bench_publish import run_publish_bench

        return run_publish_bench(args.items, args.changed_ratio, args.redis_url)
    if args.kind == "consume":
        from worker.bench_consume import run_consume_bench

        return run_consume_bench(args.events, args.rates, args.duration, args.max_in_flight,
                                 args.redis_url)
    from worker.bench_fleet import run_fleet_bench

    return run_fleet_bench(args.connectors, args.modes, args.duration)


def _operate(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.fleet_config:
        settings = settings.model_copy(update={"connectors_config_path": Path(args.fleet_config)})
    console = commands.Console()
    if args.command == "config":
        from providers.builtin import default_registry

        return commands.config_check(settings, default_registry(), console)
    if args.command == "rules":
        return run_rules_command(args, settings, console)
    confirm = _confirmation(args)
    actions: dict[str, Callable[[Redis], Awaitable[int]]] = {
        "status": lambda r: commands.status(r, settings, console, as_json=args.json),
        "leases": lambda r: commands.leases(r, console, as_json=args.json),
        "lease": lambda r: commands.release_lease(r, console, args.name, confirm=confirm),
        "audit": lambda r: run_audit_command(r, args, console, confirm=confirm,
                                             signing_key_path=settings.audit_signing_key),
        "catalog": lambda r: run_catalog_command(r, args, console),
        "dlq": lambda r: run_redis_command(r, args, console, confirm),
        "consumers": lambda r: run_redis_command(r, args, console, confirm),
        "stream": lambda r: commands.stream_tail(
            r, console, args.stream, from_start=args.from_start, count=args.count),
        "state": lambda r: (
            commands.state_show(r, console, args.name, items=args.items)
            if args.state_command == "show"
            else commands.state_reset(r, console, args.name, confirm=confirm)),
    }
    return _with_redis(settings, console, actions[args.command])


def _confirmation(args: argparse.Namespace) -> commands.Confirm:
    if getattr(args, "yes", False):
        return lambda _: True
    return commands.ask_on_terminal


def _with_redis(settings: Settings, console: commands.Console,
                action: Callable[[Redis], Awaitable[int]]) -> int:
    async def main() -> int:
        url = settings.redis_url or settings.redis_default_url
        redis = create_redis(url)
        try:
            return await action(redis)
        except UNAVAILABLE as exc:
            console.problem(f"Redis unavailable at {redact_url(url)}: {exc}")
            return ExitCode.UNAVAILABLE
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return ExitCode.OK
