"""A directory's snapshot: each matching file's relative path, size, modification
time and (optionally) content hash. Taken in a thread: a tree of 100,000 files
takes a while to stat, and the event loop must keep renewing the lease."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat as file_modes
from dataclasses import dataclass
from pathlib import Path

from framework.core import SourceError


@dataclass(frozen=True, slots=True)
class FileState:
    path: str  # relative to the watched directory, with "/" separators
    size: int
    mtime_ns: int
    sha256: str | None = None

    @property
    def version(self) -> str:
        return self.sha256 or f"{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class SnapshotRules:
    root: Path
    globs: tuple[str, ...]
    recursive: bool
    hash_content: bool
    max_hash_bytes: int
    max_files: int


def take_snapshot(rules: SnapshotRules, *, connector: str) -> dict[str, FileState]:
    """Every regular file under ``rules.root`` that a glob matches (all when none).
    Raises :class:`SourceError` when the directory is gone or holds more than
    ``max_files`` matching files (memory is bounded by that)."""
    if not rules.root.is_dir():
        raise SourceError(f"{rules.root} is not a directory (or is gone)", connector=connector)
    found: dict[str, FileState] = {}
    for relative, absolute in _files(rules):
        if rules.globs and not any(fnmatch.fnmatchcase(relative, g) for g in rules.globs):
            continue
        state = _file_state(relative, absolute, rules)
        if state is None:
            continue  # removed between listing and stat: the next snapshot says so
        found[relative] = state
        if len(found) > rules.max_files:
            raise SourceError(f"{rules.root} holds more than maxFiles={rules.max_files} "
                              "matching files; narrow the globs or raise maxFiles",
                              connector=connector)
    return found


def _files(rules: SnapshotRules) -> list[tuple[str, str]]:
    listed = []
    for directory, subdirectories, names in os.walk(rules.root):
        if not rules.recursive:
            subdirectories.clear()
        base = Path(directory)
        for name in names:
            absolute = base / name
            listed.append((absolute.relative_to(rules.root).as_posix(), str(absolute)))
    return listed


def _file_state(relative: str, absolute: str, rules: SnapshotRules) -> FileState | None:
    try:
        info = os.stat(absolute, follow_symlinks=False)
        if not file_modes.S_ISREG(info.st_mode):
            return None
        digest = _sha256(absolute, rules.max_hash_bytes) if rules.hash_content else None
    except FileNotFoundError:
        return None
    return FileState(relative, info.st_size, info.st_mtime_ns, digest)


def _sha256(path: str, limit: int) -> str:
    """The hash of the first ``limit`` bytes (the whole file below that)."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as handle:
        while remaining > 0 and (block := handle.read(min(1 << 20, remaining))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()
