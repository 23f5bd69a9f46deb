"""The command lines ``connector-run`` and ``connector-fleet``: parsing and output only."""

from worker.cli.main import build_parser, connector_fleet, connector_run, run_fleet_command

__all__ = ["build_parser", "connector_fleet", "connector_run", "run_fleet_command"]
