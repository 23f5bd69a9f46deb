"""``connector-fleet dlq list|show|replay|purge``: the dead letters of a stream."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from framework.consuming import DeadLetterStream
from worker.cli.output import Confirm, Console
from worker.cli.session import Session, redis_command
from worker.exit_codes import ExitCode

if TYPE_CHECKING:
    from worker.cli.session import Subparsers


def add_dead_letter_commands(commands: Subparsers) -> None:
    dlq = commands.add_parser("dlq", help="dead letters of a stream")
    ops = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = _dlq_parser(ops, "list", "dead letters, oldest first, with reason and attempts")
    listing.add_argument("--count", type=int, default=100)
    listing.add_argument("--after", default=None, help="continue after this dead letter id")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=redis_command(_list))
    show = _dlq_parser(ops, "show", "one dead letter in full")
    show.add_argument("id")
    show.set_defaults(handler=redis_command(_show))
    replay = _dlq_parser(ops, "replay", "re-add to the stream and remove from the DLQ")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.set_defaults(handler=redis_command(_replay))
    purge = _dlq_parser(ops, "purge", "delete every dead letter of the stream")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=redis_command(_purge))


def _dlq_parser(ops: Subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = ops.add_parser(name, help=help_text)
    parser.add_argument("stream", help="the stream whose dead letters these are")
    parser.add_argument("--dead-letter-stream", default=None,
                        help="the dead-letter stream, if not STREAM:dlq")
    return parser


def _letters(redis: Redis, args: argparse.Namespace, session: Session) -> DeadLetterCommands:
    return DeadLetterCommands(redis, session.console, args.stream,
                              dead_letter_stream=args.dead_letter_stream)


async def _list(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    return await _letters(redis, args, session).list_letters(
        count=args.count, after=args.after, as_json=args.json)


async def _show(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    return await _letters(redis, args, session).show(args.id)


async def _replay(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    if not args.ids and not args.all:
        session.console.problem("dlq replay: give dead letter ids, or --all")
        return ExitCode.USAGE
    return await _letters(redis, args, session).replay(args.ids, every=args.all)


async def _purge(redis: Redis, args: argparse.Namespace, session: Session) -> int:
    return await _letters(redis, args, session).purge(confirm=session.confirm)


class DeadLetterCommands:
    """``connector-fleet dlq list|show|replay|purge``."""

    def __init__(self, redis: Redis, console: Console, stream: str, *,
                 dead_letter_stream: str | None = None) -> None:
        self._console = console
        self._letters = DeadLetterStream(redis, stream, name=dead_letter_stream)

    async def list_letters(self, *, count: int, after: str | None, as_json: bool) -> int:
        letters = await self._letters.read(count=count, after=after)
        if as_json:
            self._console.json([letter.as_json() for letter in letters])
            return ExitCode.OK
        if not letters:
            self._console.line(f"{self._letters.name}: no dead letters")
            return ExitCode.OK
        total = await self._letters.count()
        self._console.line(f"{self._letters.name}: {total} dead letter(s)")
        for letter in letters:
            rule = f" rule={letter.rule}" if letter.rule else ""
            self._console.line(f"{letter.id}  entry {letter.entry_id}  attempts={letter.attempts}"
                               f"{rule}  {letter.dead_lettered_at}  {letter.reason}")
        return ExitCode.OK

    async def show(self, dead_letter_id: str) -> int:
        letter = await self._letters.get(dead_letter_id)
        if letter is None:
            self._console.problem(f"{self._letters.name}: no dead letter {dead_letter_id}")
            return ExitCode.FAILURE
        self._console.json(letter.as_json())
        return ExitCode.OK

    async def replay(self, dead_letter_ids: Sequence[str], *, every: bool) -> int:
        ids = list(dead_letter_ids)
        if every:
            ids = [letter.id for letter in await self._letters.read(count=1_000_000)]
        missing = 0
        for dead_letter_id in ids:
            try:
                new_id = await self._letters.replay(dead_letter_id)
            except redis_errors.ResponseError as exc:
                self._console.problem(f"{dead_letter_id}: not replayed: {exc}")
                missing += 1
                continue
            if new_id is None:
                self._console.problem(f"{self._letters.name}: no dead letter {dead_letter_id}")
                missing += 1
            else:
                self._console.line(f"replayed {dead_letter_id} to {self._letters.stream} "
                                   f"as {new_id}")
        return ExitCode.FAILURE if missing else ExitCode.OK

    async def purge(self, *, confirm: Confirm) -> int:
        count = await self._letters.count()
        if not count:
            self._console.line(f"{self._letters.name}: no dead letters")
            return ExitCode.OK
        if not confirm(f"Delete the {count} dead letter(s) of {self._letters.stream} "
                       f"({self._letters.name})? They cannot be replayed afterwards."):
            self._console.problem("not purged (confirm, or pass --yes)")
            return ExitCode.FAILURE
        purged = await self._letters.purge()
        self._console.line(f"purged {purged} dead letter(s) from {self._letters.name}")
        return ExitCode.OK
