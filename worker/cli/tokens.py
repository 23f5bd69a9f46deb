"""``connector-fleet tokens create|list|revoke``: the control API's bearer tokens.

Creating or revoking one is recorded in the audit chain, made by ``cli:<user>``."""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from framework.core import SystemClock
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode
from worker.ops import Actor, OperatorAudit, Role, TokenStore

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_tokens_commands(commands: Subparsers) -> None:
    tokens = commands.add_parser("tokens", help="bearer tokens of the control API")
    ops = tokens.add_subparsers(dest="tokens_command", required=True)
    create = ops.add_parser("create", help="a new token (printed once: store it now)")
    create.add_argument("--role", required=True, choices=[role.label for role in Role])
    create.add_argument("--name", required=True, help="whose or what it is (shown in audit)")
    create.set_defaults(handler=redis_command(_create))
    listing = ops.add_parser("list", help="every token: id, name, role, created")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=redis_command(_list))
    revoke = ops.add_parser("revoke", help="revoke a token by its id (tok_...)")
    revoke.add_argument("id")
    revoke.set_defaults(handler=redis_command(_revoke))


def _cli_actor() -> Actor:
    user = getpass.getuser()
    return Actor(id=f"cli:{user}", name=user, role="admin")


def _audit(redis: Redis, session: Session) -> OperatorAudit:
    return OperatorAudit.from_key_file(redis, clock=SystemClock(),
                                       key_path=session.settings.audit_signing_key)


async def _create(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    store = TokenStore(redis, clock=SystemClock())
    actor = _cli_actor()
    try:
        token, info = await store.create(name=args.name, role=Role.parse(args.role),
                                         created_by=actor.id)
    except ValueError as exc:
        session.console.problem(f"tokens create: {exc}")
        return ExitCode.USAGE
    await _audit(redis, session).record(actor, "token_create", info.id, info.as_json())
    session.console.problem(f"created {info.id} ({info.role.label}) for {info.name}; "
                            "the token is printed once:")
    session.console.line(token)
    return ExitCode.OK


async def _list(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    tokens = await TokenStore(redis, clock=SystemClock()).list()
    if args.json:
        session.console.json([token.as_json() for token in tokens])
        return ExitCode.OK
    if not tokens:
        session.console.line("no tokens")
        return ExitCode.OK
    session.console.table(("ID", "ROLE", "NAME", "CREATED", "BY"),
                          [(t.id, t.role.label, t.name, t.created_at, t.created_by)
                           for t in tokens])
    return ExitCode.OK


async def _revoke(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    info = await TokenStore(redis, clock=SystemClock()).revoke(args.id)
    if info is None:
        session.console.problem(f"tokens revoke: no token {args.id}")
        return ExitCode.FAILURE
    await _audit(redis, session).record(_cli_actor(), "token_revoke", info.id, info.as_json())
    session.console.line(f"revoked {info.id} ({info.role.label}, {info.name})")
    return ExitCode.OK
