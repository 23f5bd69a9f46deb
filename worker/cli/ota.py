"""``connector-fleet ota start|resume|status|list``: OTA rollouts (providers.devices.ota,
driven by worker.ota). ``start`` records the rollout in Redis and drives it in the
foreground (``--detach``: only record it); after a crash or a signal, ``resume ID``
goes on where it stopped."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from redis.asyncio import Redis

from framework.core import ConfigError, SystemClock, configure_logging
from providers.devices.ota import (
    RolloutError,
    RolloutPlan,
    list_rollouts,
    rollout_status,
    start_rollout,
)
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers

MAX_MANIFEST_BYTES = 64 * 1024


def add_ota_commands(commands: Subparsers) -> None:
    ota = commands.add_parser("ota", help="firmware rollouts: canary, soak, waves, rollback")
    ops = ota.add_subparsers(dest="ota_command", required=True)
    start = ops.add_parser("start", help="start a rollout and drive it")
    start.add_argument("--firmware", required=True, type=Path,
                       help="the signed firmware manifest (JSON)")
    start.add_argument("--group", required=True, help="the registry's device group")
    start.add_argument("--canary", default="1%", help="share of the group updated first")
    start.add_argument("--soak", default="4h", help="how long the canary soaks (4h, 30m...)")
    start.add_argument("--max-failure", default="2%", help="above this, roll everything back")
    start.add_argument("--wave-size", type=int, default=1000)
    start.add_argument("--concurrency", type=int, default=200)
    start.add_argument("--events-stream", default="device-events")
    start.add_argument("--id", dest="rollout_id", default=None)
    start.add_argument("--detach", action="store_true", help="record it, do not drive it")
    start.set_defaults(handler=redis_command(_start))
    resume = ops.add_parser("resume", help="drive a rollout on from where it stopped")
    resume.add_argument("rollout_id", metavar="ID")
    resume.set_defaults(handler=redis_command(_resume))
    status = ops.add_parser("status", help="each stage's progress")
    status.add_argument("rollout_id", metavar="ID", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=redis_command(_status))


async def _start(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    try:
        plan = _plan(args)
        rollout_id, count = await start_rollout(redis, plan, now_s=SystemClock().time(),
                                                rollout_id=args.rollout_id)
    except (ValueError, OSError, RolloutError) as exc:
        session.console.problem(f"ota start: {exc}")
        return ExitCode.USAGE
    session.console.line(f"rollout {rollout_id}: {count} devices, version {plan.version}")
    return ExitCode.OK if args.detach else await _drive(redis, rollout_id, session)


async def _resume(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    return await _drive(redis, args.rollout_id, session)


async def _drive(redis: Redis, rollout_id: str, session: Session) -> int:
    from worker.ota import drive_rollout  # the capabilities and the catalog: only here

    configure_logging()  # a long-running command: JSON lines on stderr, as connector-run
    try:
        stage = await drive_rollout(redis, rollout_id, session.settings)
    except ConfigError as exc:
        session.console.problem(str(exc))
        return ExitCode.CONFIG
    except RolloutError as exc:
        session.console.problem(str(exc))
        return ExitCode.FAILURE
    session.console.line(f"rollout {rollout_id}: {stage}")
    return ExitCode.OK if stage == "done" else ExitCode.FAILURE


async def _status(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    ids = [args.rollout_id] if args.rollout_id else await list_rollouts(redis)
    rows: list[dict[str, Any]] = []
    for rollout_id in ids:
        try:
            rows.append(await rollout_status(redis, rollout_id))
        except RolloutError as exc:
            session.console.problem(str(exc))
            return ExitCode.USAGE
    if args.json:
        session.console.json(rows[0] if args.rollout_id else rows)
        return ExitCode.OK
    session.console.table(
        ["rollout", "stage", "version", "devices", "canary", "waves", "updated", "failed",
         "rolled back"],
        [[r["id"], r["stage"], r["version"], str(r["devices"]),
          f"{r['canary']['devices']} ({r['canary']['unhealthy']} unhealthy)",
          f"{r['waves']['done']}/{r['waves']['total']}", str(r["states"]["updated"]),
          str(r["states"]["failed"] + r["states"]["rollback_failed"]),
          str(r["states"]["rolled_back"])] for r in rows])
    return ExitCode.OK


def _plan(args: argparse.Namespace) -> RolloutPlan:
    with args.firmware.open("rb") as file:
        data = file.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"--firmware {args.firmware}: over {MAX_MANIFEST_BYTES} bytes")
    try:
        return RolloutPlan.model_validate({
            "firmware": json.loads(data), "group": args.group, "canaryPercent": args.canary,
            "soakS": args.soak, "maxFailurePercent": args.max_failure,
            "waveSize": args.wave_size, "concurrency": args.concurrency,
            "eventsStream": args.events_stream})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ValueError(problems) from None
