"""``fs-watch``: files created, modified and deleted under a directory."""

from providers.fs.watch import FsWatchConfig, create_fs_watch_connector

__all__ = ["FsWatchConfig", "create_fs_watch_connector"]
