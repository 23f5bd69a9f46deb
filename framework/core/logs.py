"""Structured logging: one JSON object per line, secrets redacted.

``configure_logging`` is called once by the process entry point; components
receive a bound logger (``logger.bind(connector=name)``) and never configure
logging themselves.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from framework.core.redaction import REDACTED, is_secret_key, redact_url
from framework.core.secrets import KnownSecrets

Logger = FilteringBoundLogger


def _redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if is_secret_key(key) and value not in (None, ""):
            event[key] = REDACTED
        elif isinstance(value, str) and "://" in value:
            event[key] = redact_url(value)
    return event


def _orjson_dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def _redacting_known(secrets: KnownSecrets) -> Any:
    """The last step: every known secret value is replaced in the rendered line,
    whatever field, message or traceback it sits in."""

    def redact_line(_: Any, __: str, line: str) -> str:
        return secrets.redact_text(line)

    return redact_line


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None,
                      secrets: KnownSecrets | None = None) -> None:
    """``secrets``: the values (from ``${VAR}``) to redact in every line, filled in
    as the process loads its configuration."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
            *([_redacting_known(secrets)] if secrets is not None else []),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Logger:
    logger: Logger = structlog.get_logger().bind(**context)
    return logger
