"""``connector-fleet devices simulate --count N --broker URL``: N simulated devices
in this process, until SIGINT/SIGTERM (or ``--duration-s``). The broker login comes
from ``DEVICE_BROKER_USERNAME`` / ``DEVICE_BROKER_PASSWORD`` (never the command line)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

from pydantic import ValidationError

from framework.core import configure_logging, get_logger
from providers.devices import DeviceBroker, DeviceLinkError, DeviceSimulator, SimulatorOptions
from worker.cli.output import Console
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_simulate_command(devices_subparsers: Subparsers) -> None:
    simulate = devices_subparsers.add_parser(
        "simulate", help="simulated devices over MQTT (heartbeats, telemetry, commands)")
    simulate.add_argument("--count", type=int, required=True, help="how many devices")
    simulate.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://...")
    simulate.add_argument("--prefix", default="sim", help="device ids are PREFIX-00000...")
    simulate.add_argument("--firmware", default="1.0.0", help="installed firmware version")
    simulate.add_argument("--heartbeat-interval-s", type=float, default=30.0)
    simulate.add_argument("--group", default=None, help="group named in each heartbeat")
    simulate.add_argument("--brick-on", action="append", default=[], metavar="VERSION",
                          help="a firmware version that bricks the devices (repeatable)")
    simulate.add_argument("--fail-self-test", action="append", default=[], metavar="DEVICE_ID",
                          help="a device whose self-tests fail (repeatable)")
    simulate.add_argument("--no-telemetry", action="store_true")
    simulate.add_argument("--duration-s", type=float, default=None,
                          help="stop after this long (default: until a signal)")
    simulate.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    console = Console()
    if not 1 <= args.count <= 1_000_000 or args.heartbeat_interval_s <= 0:
        console.problem("devices simulate: --count must be 1..1000000 and "
                        "--heartbeat-interval-s > 0")
        return ExitCode.USAGE
    try:
        broker = DeviceBroker(broker=args.broker,
                              username=os.environ.get("DEVICE_BROKER_USERNAME") or None,
                              password=os.environ.get("DEVICE_BROKER_PASSWORD") or None)
        options = SimulatorOptions(
            count=args.count, prefix=args.prefix, firmware_version=args.firmware,
            heartbeat_interval_s=args.heartbeat_interval_s, telemetry=not args.no_telemetry,
            brick_on=frozenset(args.brick_on), fail_self_test=frozenset(args.fail_self_test),
            group=args.group)
        options.device_ids()
    except (ValidationError, ValueError) as exc:
        console.problem(f"devices simulate: {exc}")
        return ExitCode.USAGE
    configure_logging()
    try:
        asyncio.run(_run(broker, options, args.duration_s, console))
    except DeviceLinkError as exc:
        console.problem(f"devices simulate: {exc}")
        return ExitCode.UNAVAILABLE
    return ExitCode.OK


async def _run(broker: DeviceBroker, options: SimulatorOptions, duration_s: float | None,
               console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with DeviceSimulator(broker, options, logger=get_logger(component="simulator")) as fleet:
        console.line(f"simulating {options.count} devices on {broker.broker}")
        beating = asyncio.create_task(fleet.run())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_s):
                await stop.wait()
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
