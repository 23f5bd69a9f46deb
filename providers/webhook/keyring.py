"""The keys callers authenticate with: from the config (``${VAR}``) and from a file
that is re-read when it changes, so keys rotate without a restart.

The file holds one ``client-id:key`` per line (blank lines and ``#`` comments are
skipped); a client may have several keys, which is how a rotation overlaps: add the
new key, move the callers, remove the old one. The file is checked at most once per
``check_interval_s``; a file that cannot be read or parsed keeps the keys last read
(logged, never a crash) so that a half-written file does not lock every caller out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from framework.core import Logger

CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ClientKey:
    client: str
    key: bytes


class KeyFileError(ValueError):
    """A keys file that cannot be used: the line (never the key) and why."""


def parse_secrets_file(text: str, path: Path) -> list[ClientKey]:
    keys: list[ClientKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        client, separator, key = line.partition(":")
        if not separator or not client.strip() or not key.strip():
            raise KeyFileError(f"{path}:{number}: expected 'client-id:key'")
        keys.append(ClientKey(client.strip(), key.strip().encode()))
    return keys


class KeyRing:
    """The keys valid now (see the module docstring)."""

    def __init__(
        self,
        inline: Mapping[str, str],
        path: Path | None,
        *,
        logger: Logger,
        check_interval_s: float = CHECK_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inline = [ClientKey(client, key.encode()) for client, key in inline.items()]
        self._path = path
        self._log = logger
        self._interval_s = check_interval_s
        self._monotonic = monotonic
        self._file_keys: list[ClientKey] = []
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        if path is not None:
            self._load(path, first=True)

    def current(self) -> list[ClientKey]:
        """Every key valid now: the inline ones, then the file's as last read."""
        if self._path is not None and self._monotonic() - self._checked_at >= self._interval_s:
            self._load(self._path, first=False)
        return [*self._inline, *self._file_keys]

    def _load(self, path: Path, *, first: bool) -> None:
        self._checked_at = self._monotonic()
        try:
            stat = path.stat()
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature == self._signature:
                return
            keys = parse_secrets_file(path.read_text(encoding="utf-8"), path)
        except (OSError, UnicodeDecodeError, KeyFileError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            if first:
                raise KeyFileError(f"secretsFile {path}: {reason}") from None
            self._log.error("webhook_secrets_file_unreadable", path=str(path), error=reason,
                            kept=len(self._file_keys))
            return
        self._signature = signature
        self._file_keys = keys
        if not first:
            self._log.info("webhook_keys_reloaded", path=str(path), keys=len(keys))

    def reload_now(self) -> None:
        """Check the file at the next lookup, whatever the interval (e.g. on SIGHUP)."""
        self._checked_at = float("-inf")
