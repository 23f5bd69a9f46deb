"""Command lines: ``connector-run`` and ``connector-fleet``. Parsing only: each
command's parser names its handler (``set_defaults(handler=...)``), which calls
into :mod:`worker.connector`, :mod:`worker.fleet`, :mod:`worker.consume`,
:mod:`worker.ops`, :mod:`worker.bench` or the framework."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker.cli.audit import add_audit_commands
from worker.cli.bench import add_bench_commands
from worker.cli.catalog import add_catalog_commands
from worker.cli.consumers import add_consume_command, add_consumers_command
from worker.cli.dead_letters import add_dead_letter_commands
from worker.cli.devices import add_devices_commands
from worker.cli.fleet import add_fleet_commands
from worker.cli.migrate import add_migrate_command
from worker.cli.ota import add_ota_commands
from worker.cli.processes import add_run_commands, run_connector
from worker.cli.rules import add_rules_commands
from worker.cli.streams import add_streams_commands
from worker.cli.tokens import add_tokens_commands


def connector_run(argv: Sequence[str] | None = None) -> None:
    """``connector-run NAME``: one connector (the connector defaults to $CONNECTOR_NAME)."""
    sys.exit(run_connector(argv))


def connector_fleet(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_fleet_command(argv))


def run_fleet_command(argv: Sequence[str] | None = None) -> int:
    """Parse ``connector-fleet``'s arguments and run the command; its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="connector-fleet", description="Operate the fleet.")
    # Not "config": run-all's own --config would overwrite it (argparse sub-parsers).
    parser.add_argument("--config", dest="fleet_config", default=None,
                        help="path of connectors.json (default: $CONNECTORS_CONFIG_PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_commands(commands)
    add_fleet_commands(commands)
    add_migrate_command(commands)
    add_ota_commands(commands)
    add_bench_commands(commands)
    add_audit_commands(commands)
    add_catalog_commands(commands)
    add_consume_command(commands)
    add_consumers_command(commands)
    add_dead_letter_commands(commands)
    add_devices_commands(commands)
    add_rules_commands(commands)
    add_streams_commands(commands)
    add_tokens_commands(commands)
    return parser
