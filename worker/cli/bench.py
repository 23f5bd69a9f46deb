"""``connector-fleet bench publish|fleet|consume|scale|sources|webhook|field|devices``:
benchmarks, not
tests. Each one's module is imported only when it runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from worker.bench.repeat import DEFAULT_RUNS

if TYPE_CHECKING:
    from worker.cli.session import Subparsers

_PRIVATE_REDIS = "Redis to use (default: a private redis-server on a free port)"
_RUNS = "runs, each in fresh processes; the report shows median (min–max)"


def add_bench_commands(commands: Subparsers) -> None:
    bench = commands.add_parser("bench", help="benchmarks (not tests)")
    kinds = bench.add_subparsers(dest="kind", required=True)
    publish = kinds.add_parser("publish", help="diff + transform + publish + state")
    publish.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000])
    publish.add_argument("--changed-ratio", type=float, default=0.1)
    publish.add_argument("--redis-url", default=None, help=_PRIVATE_REDIS)
    publish.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    publish.add_argument("--replica-acks", type=int, default=0,
                         help="WAIT for N replicas after each commit (private Redis: "
                              "starts N replicas)")
    publish.add_argument("--replicas", type=int, default=0,
                         help="replicas of the private Redis (at least --replica-acks)")
    publish.set_defaults(handler=_publish)
    fleet = kinds.add_parser("fleet", help="run-all at scale: memory, CPU, jitter")
    fleet.add_argument("--connectors", type=int, nargs="+", default=[50, 200])
    fleet.add_argument(
        "--modes", nargs="+", choices=["process", "in-process"], default=["process", "in-process"]
    )
    fleet.add_argument(
        "--duration", type=float, default=30.0, help="seconds measured once every connector polls"
    )
    fleet.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    fleet.set_defaults(handler=_fleet)
    consume = kinds.add_parser(
        "consume", help="events/s and latency of one consumer, against a raw loop and peers"
    )
    consume.add_argument(
        "--events", type=int, default=20_000, help="events queued for the throughput run"
    )
    consume.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[1_000, 10_000],
        help="steady send rates (events/s) of the latency runs",
    )
    consume.add_argument(
        "--duration", type=float, default=10.0, help="seconds of sending per latency run"
    )
    consume.add_argument("--max-in-flight", type=int, default=64)
    consume.add_argument("--redis-url", default=None, help=_PRIVATE_REDIS)
    consume.add_argument(
        "--systems",
        nargs="+",
        default=None,
        help="systems to run (default: all: connector-fleet connector-fleet-2p limit email_send "
        "slack_message pump_control kafka_publish celery arq faststream taskiq)",
    )
    consume.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    consume.set_defaults(handler=_consume)
    webhook = kinds.add_parser(
        "webhook", help="http-webhook requests/s at p99 < 50 ms, against a bare aiohttp XADD")
    webhook.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32],
                         help="concurrent senders (a closed loop each)")
    webhook.add_argument("--duration", type=float, default=5.0,
                         help="seconds of sending per concurrency")
    webhook.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    webhook.set_defaults(handler=_webhook)
    scale = kinds.add_parser(
        "scale", help="publish and consume: 1 server vs a 3-master cluster with 1, 3, 6 "
                      "shards, and WAIT 1")
    scale.add_argument("--items", type=int, default=60_000,
                       help="items published per setup, over 6 connectors")
    scale.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    scale.set_defaults(handler=_scale)
    sources = kinds.add_parser(
        "sources", help="each source's rate into the stream, against a bare client loop")
    sources.add_argument("--source", "--sources", nargs="+", default=None, dest="sources",
                         help="sources to run (default: all of worker.bench.sources.SOURCES)")
    sources.add_argument("--events", type=int, default=20_000,
                         help="brokers: messages loaded into the peer, then drained")
    sources.add_argument("--registers", type=int, default=1000,
                         help="modbus: holding registers read per poll")
    sources.add_argument("--polls", type=int, default=50,
                         help="modbus: polls measured per mode")
    sources.add_argument("--mails", type=int, default=1000,
                         help="imap: mails delivered, then drained")
    sources.add_argument("--files", type=int, default=2000,
                         help="fs: files moved into the watched directory")
    sources.add_argument("--ticks", type=int, default=30,
                         help="cron: ticks of an every-second schedule timed per system")
    sources.add_argument("--redis-url", default=None, help=_PRIVATE_REDIS)
    sources.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    sources.set_defaults(handler=_sources)
    field = kinds.add_parser(
        "field", help="drone_waypoint and alarm_trigger, against bare pymavlink / paho loops")
    field.add_argument("--missions", type=int, default=200, help="missions uploaded per loop")
    field.add_argument("--waypoints", type=int, default=10, help="waypoints per mission")
    field.add_argument("--alarms", type=int, default=100, help="alarms raised per loop")
    field.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    field.set_defaults(handler=_field)
    devices = kinds.add_parser(
        "devices", help="absence detection: registry + watchdog vs a Python timer per device")
    devices.add_argument("--devices", type=int, nargs="+", default=[100_000, 1_000_000])
    devices.add_argument("--window", type=float, default=10.0,
                         help="seconds over which the silent devices' deadlines fall")
    devices.add_argument("--ota-devices", type=int, default=10_000,
                         help="simulated devices of the OTA wave row (0: no OTA row)")
    devices.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=_RUNS)
    devices.set_defaults(handler=_devices)


def _publish(args: argparse.Namespace) -> int:
    from worker.bench.publish import run_publish_bench

    return run_publish_bench(args.items, args.changed_ratio, args.redis_url, args.runs,
                             args.replica_acks, args.replicas)


def _scale(args: argparse.Namespace) -> int:
    from worker.bench.scale import run_scale_bench

    return run_scale_bench(args.items, args.runs)


def _fleet(args: argparse.Namespace) -> int:
    from worker.bench.fleet import run_fleet_bench

    return run_fleet_bench(args.connectors, args.modes, args.duration, args.runs)


def _consume(args: argparse.Namespace) -> int:
    from worker.bench.consume import SYSTEMS, run_consume_bench

    params = {
        "events": args.events,
        "rates": args.rates,
        "duration_s": args.duration,
        "max_in_flight": args.max_in_flight,
        "redis_url": args.redis_url,
        "systems": args.systems or list(SYSTEMS),
    }
    return run_consume_bench(params, args.runs)


def _webhook(args: argparse.Namespace) -> int:
    from worker.bench.webhook import run_webhook_bench

    return run_webhook_bench(args.concurrency, args.duration, args.runs)


def _devices(args: argparse.Namespace) -> int:
    from worker.bench.devices import run_devices_bench

    return run_devices_bench(args.devices, args.window, args.runs, args.ota_devices)


def _sources(args: argparse.Namespace) -> int:
    from worker.bench.sources import SOURCES, run_sources_bench

    params = {"sources": args.sources or list(SOURCES), "events": args.events,
              "registers": args.registers, "polls": args.polls, "redis_url": args.redis_url,
              "mails": args.mails, "files": args.files, "ticks": args.ticks}
    return run_sources_bench(params, args.runs)


def _field(args: argparse.Namespace) -> int:
    from worker.bench.field import run_field_bench

    params = {"missions": args.missions, "waypoints": args.waypoints, "alarms": args.alarms}
    return run_field_bench(params, args.runs)
