"""``connector-fleet devices ...``: the device commands (the simulator here; the
registry's list/show/import come with the registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.cli.device_simulator import add_simulate_command

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_devices_commands(commands: Subparsers) -> Subparsers:
    """The ``devices`` group; its sub-parsers, for other device commands."""
    devices = commands.add_parser("devices", help="IoT devices")
    devices_subparsers = devices.add_subparsers(dest="devices_command", required=True)
    add_simulate_command(devices_subparsers)
    return devices_subparsers
