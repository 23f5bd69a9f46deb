"""What a command runs with: the settings (with ``--config``), the console, the
confirmation (``--yes``) and, for most commands, one Redis client."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from framework.core import (
    UNAVAILABLE,
    ConfigError,
    Settings,
    create_redis,
    read_settings,
    redact_url,
)
from worker.cli.output import Confirm, Console, always_yes, ask_on_terminal
from worker.exit_codes import ExitCode

Handler = Callable[[argparse.Namespace], int]

if TYPE_CHECKING:
    # What add_subparsers() returns; subscriptable for type checkers only.
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(frozen=True)
class Session:
    settings: Settings
    console: Console
    confirm: Confirm


Command = Callable[[argparse.Namespace, Session], int]
RedisCommand = Callable[[Redis, argparse.Namespace, Session], Awaitable[int]]


def session_of(args: argparse.Namespace) -> Session:
    """Raises ConfigError (one line) when the environment's settings are invalid."""
    settings = read_settings()
    fleet_config = getattr(args, "fleet_config", None)
    if fleet_config:
        settings = settings.model_copy(update={"connectors_config_path": Path(fleet_config)})
    confirm = always_yes if getattr(args, "yes", False) else ask_on_terminal
    return Session(settings=settings, console=Console(), confirm=confirm)


def command(run: Command) -> Handler:
    """A handler for a command that needs no Redis."""

    def handler(args: argparse.Namespace) -> int:
        session = _session_or_problem(args)
        return ExitCode.CONFIG if session is None else run(args, session)

    return handler


def _session_or_problem(args: argparse.Namespace) -> Session | None:
    try:
        return session_of(args)
    except ConfigError as exc:
        Console().problem(str(exc))
        return None


def redis_command(run: RedisCommand) -> Handler:
    """A handler for a command run on one Redis client (REDIS_URL, else the default
    address); Redis unreachable: exit 69, Ctrl-C: exit 0."""

    def handler(args: argparse.Namespace) -> int:
        session = _session_or_problem(args)
        if session is None:
            return ExitCode.CONFIG
        try:
            return asyncio.run(_on_redis(run, args, session))
        except KeyboardInterrupt:
            return ExitCode.OK

    return handler


async def _on_redis(run: RedisCommand, args: argparse.Namespace, session: Session) -> int:
    url = session.settings.redis_url or session.settings.redis_default_url
    redis = create_redis(url)
    try:
        return await run(redis, args, session)
    except UNAVAILABLE as exc:
        session.console.problem(f"Redis unavailable at {redact_url(url)}: {exc}")
        return ExitCode.UNAVAILABLE
    finally:
        await redis.aclose()
