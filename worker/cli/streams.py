"""``connector-fleet streams trim``: the retention policy, once, on named streams (the
consume processes apply it every ``FLEET_STREAM_TRIM_INTERVAL_S``; this is for streams
no running consumer trims, or for cron)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming import StreamRetention
from framework.core import get_logger
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_streams_commands(commands: Subparsers) -> None:
    streams = commands.add_parser("streams", help="stream retention")
    ops = streams.add_subparsers(dest="streams_command", required=True)
    trim = ops.add_parser(
        "trim", help="trim what every consumer group acknowledged, then cap the length"
    )
    trim.add_argument("streams", nargs="+", metavar="STREAM")
    trim.add_argument(
        "--max-len",
        type=int,
        default=None,
        help="cap, whatever the entries' state (default: $FLEET_STREAM_MAX_LEN; 0: no cap)",
    )
    trim.add_argument("--json", action="store_true")
    trim.set_defaults(handler=redis_command(_trim))


async def _trim(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    max_len = session.settings.stream_max_len if args.max_len is None else args.max_len
    if max_len < 0:
        session.console.problem(f"streams trim: --max-len must be >= 0, got {max_len}")
        return ExitCode.USAGE
    retention = StreamRetention(redis, max_len=max_len, logger=get_logger(component="cli"))
    rows, failed = [], False
    for stream in args.streams:
        try:
            trimmed = await retention.trim(stream)
        except redis_errors.ResponseError as exc:  # e.g. WRONGTYPE: one bad name, the rest go on
            session.console.problem(f"streams trim {stream}: {exc}")
            failed = True
            continue
        rows.append(
            {
                "stream": stream,
                "acknowledged": trimmed.acknowledged,
                "capped": trimmed.capped,
                "minId": trimmed.min_id,
            }
        )
    if args.json:
        session.console.json(rows)
    else:
        session.console.table(
            ["STREAM", "TRIMMED (ACKED)", "TRIMMED (CAP)", "MIN ID"],
            [
                [
                    r["stream"],
                    str(r["acknowledged"]),
                    str(r["capped"]),
                    str(r["minId"] or "no group"),
                ]
                for r in rows
            ],
        )
    return ExitCode.FAILURE if failed else ExitCode.OK
