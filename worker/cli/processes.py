"""The commands that run a long-running process: ``connector-run`` (also
``connector-fleet run``) and ``connector-fleet run-all``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def run_connector(argv: Sequence[str] | None = None) -> int:
    """``connector-run [NAME] [--once] [--metrics-port P] [--config PATH]``."""
    parser = argparse.ArgumentParser(
        prog="connector-run",
        description="Run one connector: hold lease:NAME and poll into its Redis stream.",
    )
    parser.add_argument("name", nargs="?", default=os.environ.get("CONNECTOR_NAME"),
                        help="connector name (default: $CONNECTOR_NAME)")
    parser.add_argument("--once", action="store_true",
                        help="run one poll and exit (exit 75 if another instance holds the lease)")
    add_process_options(parser)
    args = parser.parse_args(argv)
    if not args.name:
        parser.error("a connector name is required (argument or CONNECTOR_NAME)")
    from worker.connector import run_connector_process

    return run_connector_process(args.name, once=args.once, metrics_port=args.metrics_port,
                                 config_path=args.config)


def add_process_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="serve the ops HTTP API on this port (default: $METRICS_PORT)")
    parser.add_argument("--config", default=None,
                        help="path of connectors.json (default: $CONNECTORS_CONFIG_PATH)")


def add_run_commands(commands: Subparsers) -> None:
    """``run`` (same as ``connector-run``) and ``run-all``."""
    run = commands.add_parser("run", help="run one connector (same as connector-run)")
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.set_defaults(handler=lambda args: run_connector(args.args))
    run_all = commands.add_parser("run-all", help="supervise every enabled connector")
    add_process_options(run_all)
    run_all.add_argument("--in-process", action="store_true",
                         help="run every connector as a task of this one process "
                              "(less memory, less isolation)")
    run_all.set_defaults(handler=_run_all)


def _run_all(args: argparse.Namespace) -> int:
    from worker.fleet import run_fleet_process

    return run_fleet_process(metrics_port=args.metrics_port,
                             config_path=args.config or args.fleet_config,
                             in_process=args.in_process)
