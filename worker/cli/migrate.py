"""``connector-fleet migrate-keys``: rename the connectors' keys from the single-server
names to the Cluster's hash-tagged ones (framework.polling.key_migration)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.asyncio import Redis

from framework.core import KeyScheme, create_redis, redact_url
from framework.polling import KeyMove, Migration, MigrationReport, MoveOutcome
from worker.cli.connector_keys import configured_connectors
from worker.cli.output import Console
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers

_SHOWN = {
    "moved": "moved",
    "finished": "finished (copied by an earlier run)",
    "conflict": "CONFLICT (the new key holds another value; left as is)",
}


def add_migrate_command(commands: Subparsers) -> None:
    migrate = commands.add_parser(
        "migrate-keys",
        help="move connector keys to the hash-tagged names (Redis Cluster)",
        description="Copy each configured connector's state, item versions and metrics "
        "from lease:NAME-style names to the names of FLEET_REDIS_HASH_TAGS=1 "
        "(connector:state:{NAME}...), then delete the old keys. Idempotent: rerun it "
        "after an interruption. Stop the fleet first.",
    )
    migrate.add_argument(
        "--from-url", default=None, help="the Redis to move from (default: the same as REDIS_URL)"
    )
    migrate.set_defaults(
        handler=redis_command(lambda r, args, s: migrate_keys(r, s, from_url=args.from_url))
    )


async def migrate_keys(redis: Redis, session: Session, *, from_url: str | None) -> int:
    target_scheme = session.settings.key_scheme
    if from_url is None and not target_scheme.tagged:
        session.console.problem(
            "FLEET_REDIS_HASH_TAGS is off: the keys already have their "
            "single-server names; set it (Cluster) to migrate"
        )
        return ExitCode.CONFIG
    source = redis if from_url is None else create_redis(from_url)
    console = session.console

    async def show(move: KeyMove, outcome: MoveOutcome) -> None:
        if outcome != "absent":
            console.line(f"{move.connector}: {move.source} -> {move.target}: {_SHOWN[outcome]}")

    try:
        migration = Migration(
            source=source,
            target=redis,
            from_scheme=KeyScheme(),
            to_scheme=target_scheme,
            on_key=show,
        )
        report = await migration.run(configured_connectors(session.settings).values())
    finally:
        if source is not redis:
            await source.aclose()
    return _summary(report, console, source=redact_url(from_url) if from_url else None)


def _summary(report: MigrationReport, console: Console, *, source: str | None) -> int:
    for problem in report.refused.values():
        console.problem(problem)
    console.line(
        f"{report.count('moved')} keys moved, {report.count('finished')} finished, "
        f"{report.count('absent')} absent or already moved, "
        f"{report.count('conflict')} conflicts, {len(report.refused)} connectors "
        f"refused" + (f" (from {source})" if source else "")
    )
    return ExitCode.OK if report.ok else ExitCode.FAILURE
