"""Command lines: ``connector-run`` and ``connector-fleet``. Parsing only; the
work is done by :mod:`worker.process` and :mod:`worker.bench`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from worker.exit_codes import ExitCode


def connector_run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="connector-run",
        description="Run one connector: hold lease:NAME and poll into its Redis stream.",
    )
    parser.add_argument("name", nargs="?", default=os.environ.get("CONNECTOR_NAME"),
                        help="connector name (default: $CONNECTOR_NAME)")
    parser.add_argument("--once", action="store_true",
                        help="run one poll and exit (exit 75 if another instance holds the lease)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics and /health on this port (default: $METRICS_PORT)")
    parser.add_argument("--config", default=None,
                        help="path of connectors.json (default: $CONNECTORS_CONFIG_PATH)")
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("a connector name is required (argument or CONNECTOR_NAME)")
    from worker.process import run_connector_process

    sys.exit(run_connector_process(
        args.name, once=args.once, metrics_port=args.metrics_port, config_path=args.config
    ))


def connector_fleet(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="connector-fleet", description="Operate the fleet.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one connector (same as connector-run)")
    run.add_argument("args", nargs=argparse.REMAINDER)
    bench = commands.add_parser("bench", help="benchmarks (not tests)")
    bench_kinds = bench.add_subparsers(dest="kind", required=True)
    publish = bench_kinds.add_parser("publish", help="diff + transform + publish + state")
    publish.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    publish.add_argument("--changed-ratio", type=float, default=0.1)
    publish.add_argument("--redis-url", default=None,
                         help="Redis to use (default: a private redis-server on a free port)")
    args = parser.parse_args(argv)
    if args.command == "run":
        connector_run(args.args)
    if args.command == "bench":
        from worker.bench import run_publish_bench

        sys.exit(run_publish_bench(args.items, args.changed_ratio, args.redis_url))
    sys.exit(ExitCode.USAGE)
