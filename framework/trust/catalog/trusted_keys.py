"""The trusted catalog keys of a running consumer: read, watched, swapped in.

:class:`TrustStoreSource` reads ``CATALOG_TRUSTED_KEYS`` (a file or a directory
of ``*.json``) and ``CATALOG_TRUSTED_KEYS_JSON`` and tells whether the files
changed since; :class:`TrustReloader` reads them again and swaps the result into
the :class:`~framework.trust.catalog.store.Catalog`, or keeps the running keys if the new
ones are invalid. See docs/catalog.md, "Rotating keys".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from framework.core.errors import SigningKeyError
from framework.core.logs import Logger
from framework.trust.catalog.signing import TrustStore, trust_store_from_env
from framework.trust.catalog.store import Catalog

# (entry name, (inode, mtime_ns) of the entry itself, (inode, mtime_ns, size) of
# what it points to); None where the entry or its target is gone.
_Fingerprint = tuple[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None], ...]


class TrustStoreSource:
    """Where this process's trusted keys come from, and what its files looked like
    when they were last read."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        path = environ.get("CATALOG_TRUSTED_KEYS")
        self.path = Path(path) if path else None
        self._fingerprint: _Fingerprint = ()

    def load(self) -> TrustStore:
        """Read the keys now (blocking; raises :class:`SigningKeyError`)."""
        # Taken before reading: a change made during the read is seen by the next
        # changed() and read again, never missed.
        self._fingerprint = fingerprint_of(self.path)
        return trust_store_from_env(self._environ)

    def changed(self) -> bool:
        """Whether the key file or directory changed since the last :meth:`load`
        (the inline JSON is an environment variable: it cannot change)."""
        return self.path is not None and fingerprint_of(self.path) != self._fingerprint


class TrustReloader:
    """Reads the trust store again and swaps it into the catalog."""

    def __init__(self, catalog: Catalog, source: TrustStoreSource, *, logger: Logger) -> None:
        self._catalog = catalog
        self._source = source
        self._log = logger

    def changed(self) -> bool:
        return self._source.changed()

    async def reload(self) -> bool:
        """True if the new keys are in use; False (logged, the running keys stay)
        if they cannot be read."""
        where = str(self._source.path or "CATALOG_TRUSTED_KEYS_JSON")
        try:
            # Off the loop: a slow volume must not stall the entries in flight.
            trust = await asyncio.to_thread(self._source.load)
        except SigningKeyError as exc:
            self._log.error("trust_store_reload_rejected", path=where, reason=str(exc),
                            kept="the trusted keys loaded before stay in use")
            return False
        change = self._catalog.replace_trust(trust)
        self._log.info("trust_store_reloaded", path=where, added=list(change.added),
                       removed=list(change.removed), changed=list(change.changed),
                       trusted_keys=list(change.trusted))
        if not change.trusted:
            self._log.warning("trust_store_empty", path=where,
                              reason="no trusted keys left: every catalog call is refused")
        return True


def fingerprint_of(path: Path | None) -> _Fingerprint:
    """What changes when the keys do. For a directory, every entry, dot files
    included: a Kubernetes Secret volume swaps its ``..data`` symlink, which leaves
    the ``NAME.pub.json`` links unchanged but not the files they lead to."""
    if path is None:
        return ()
    entries = [path]
    try:
        if path.is_dir():
            entries.extend(sorted(path.iterdir()))
    except OSError:
        pass  # unreadable now: the fingerprint of the path alone says it changed
    return tuple((entry.name, _own_stat(entry), _target_stat(entry)) for entry in entries)


def _own_stat(path: Path) -> tuple[int, ...] | None:
    try:
        own = path.lstat()
    except OSError:
        return None
    return own.st_ino, own.st_mtime_ns


def _target_stat(path: Path) -> tuple[int, ...] | None:
    try:
        target = path.stat()
    except OSError:
        return None
    return target.st_ino, target.st_mtime_ns, target.st_size
