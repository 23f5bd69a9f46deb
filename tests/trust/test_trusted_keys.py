"""Reloading the trusted keys of a running consumer (trust.catalog.trusted_keys): changes of
a key file, of a plain directory and of a Kubernetes Secret volume are seen; the new
keys are swapped into a real catalog; invalid ones leave the running keys in place."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
import structlog
from redis.asyncio import Redis

from framework.core.clock import SystemClock
from framework.core.errors import UntrustedKeyError
from framework.core.logs import get_logger
from framework.trust.catalog.signing import PrivateKey, TrustStore
from framework.trust.catalog.store import Catalog
from framework.trust.catalog.trusted_keys import TrustReloader, TrustStoreSource
from tests.trust.test_catalog import valve

CATALOG_LOG = get_logger(test="catalog")


class SecretVolume:
    """A directory written the way the kubelet writes a Secret volume: each version of
    the files in a new hidden directory, the ``..data`` symlink swapped to it in one
    rename, and one top-level symlink per key through ``..data``."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self._versions = 0

    def write(self, files: Mapping[str, bytes]) -> None:
        self._versions += 1
        version_dir = self.root / f"..2026_01_01_00_00_{self._versions:02d}.{self._versions}"
        version_dir.mkdir()
        for name, content in files.items():
            (version_dir / name).write_bytes(content)
        previous = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        staged = self.root / "..data_tmp"
        staged.symlink_to(version_dir.name)
        staged.replace(self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        for entry in self.root.iterdir():
            if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
                entry.unlink()
        if previous is not None:
            shutil.rmtree(previous)


def public_file(key: PrivateKey) -> bytes:
    return orjson.dumps(key.public(name="k").to_json())


async def test_a_secret_volume_update_is_seen_and_its_keys_swapped_in(
    redis: Redis, tmp_path: Path, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    volume = SecretVolume(tmp_path / "catalog-keys")
    volume.write({"old.pub.json": public_file(old_key)})
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS": str(volume.root)})
    catalog = Catalog(redis, source.load(), clock=SystemClock(), logger=CATALOG_LOG)
    reloader = TrustReloader(catalog, source, logger=get_logger())
    signer = Catalog(redis, TrustStore([new_key.public()]), clock=SystemClock(),
                     logger=CATALOG_LOG)
    await signer.register(valve("1.1.0").signed_with(new_key))
    assert not reloader.changed()

    volume.write({"old.pub.json": public_file(old_key), "new.pub.json": public_file(new_key)})
    assert reloader.changed()
    with structlog.testing.capture_logs() as logs:
        reloader = TrustReloader(catalog, source, logger=get_logger())
        assert await reloader.reload()

    assert not reloader.changed()
    [reloaded] = [log for log in logs if log["event"] == "trust_store_reloaded"]
    assert (reloaded["added"], reloaded["removed"]) == ([new_key.key_id], [])
    assert (await catalog.resolve("valve_control", "^1")).key_id == new_key.key_id
    # Key ids only, never the keys themselves.
    assert new_key.public().to_json()["publicKey"] not in str(logs)


def test_a_secret_volume_update_of_a_kept_file_name_is_seen(
    tmp_path: Path, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    volume = SecretVolume(tmp_path / "catalog-keys")
    volume.write({"signing.pub.json": public_file(old_key)})
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS": str(volume.root)})
    source.load()
    link_before = (volume.root / "signing.pub.json").lstat()

    volume.write({"signing.pub.json": public_file(new_key)})

    # The link the key is read through is the same; what it leads to is not.
    assert (volume.root / "signing.pub.json").lstat().st_ino == link_before.st_ino
    assert source.changed()
    assert [key.key_id for key in source.load().keys] == [new_key.key_id]


def test_a_key_file_rewritten_in_place_is_seen(tmp_path: Path, old_key: PrivateKey,
                                               new_key: PrivateKey) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(public_file(old_key))
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS": str(path)})
    source.load()
    assert not source.changed()

    path.write_bytes(public_file(new_key))

    assert source.changed()
    assert [key.key_id for key in source.load().keys] == [new_key.key_id]


def test_keys_added_to_and_removed_from_a_plain_directory_are_seen(
    tmp_path: Path, old_key: PrivateKey, new_key: PrivateKey,
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "old.pub.json").write_bytes(public_file(old_key))
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS": str(keys)})
    source.load()

    (keys / "new.pub.json").write_bytes(public_file(new_key))
    assert source.changed()
    assert {key.key_id for key in source.load().keys} == {old_key.key_id, new_key.key_id}

    (keys / "old.pub.json").unlink()
    assert source.changed()
    assert [key.key_id for key in source.load().keys] == [new_key.key_id]
    assert not source.changed()

    # Rewritten in place: the directory itself does not change, the file does.
    (keys / "new.pub.json").write_bytes(public_file(old_key))
    assert source.changed()
    assert [key.key_id for key in source.load().keys] == [old_key.key_id]


def test_inline_keys_alone_never_change(old_key: PrivateKey) -> None:
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS_JSON": public_file(old_key).decode()})
    assert [key.key_id for key in source.load().keys] == [old_key.key_id]
    assert not source.changed()


@pytest.mark.parametrize(("content", "reason"), [
    (b"{not json", "not valid JSON"),
    (b'{"publicKey": "c2hvcnQ="}', "publicKey must be the base64 of a 32-byte Ed25519 key"),
])
async def test_an_invalid_key_file_keeps_the_running_keys_and_says_which_and_why(
    redis: Redis, tmp_path: Path, old_key: PrivateKey, new_key: PrivateKey,
    content: bytes, reason: str,
) -> None:
    volume = SecretVolume(tmp_path / "catalog-keys")
    volume.write({"old.pub.json": public_file(old_key)})
    source = TrustStoreSource({"CATALOG_TRUSTED_KEYS": str(volume.root)})
    catalog = Catalog(redis, source.load(), clock=SystemClock(), logger=CATALOG_LOG)
    await catalog.register(valve("1.0.0").signed_with(old_key))

    # The old key is dropped in the same update: keeping the old store must keep it.
    volume.write({"new.pub.json": public_file(new_key), "broken.pub.json": content})
    with structlog.testing.capture_logs() as logs:
        reloader = TrustReloader(catalog, source, logger=get_logger())
        assert not await reloader.reload()

    [rejected] = [log for log in logs if log["event"] == "trust_store_reload_rejected"]
    assert rejected["log_level"] == "error"
    assert str(volume.root / "broken.pub.json") in rejected["reason"]
    assert reason in rejected["reason"]
    assert (await catalog.resolve("valve_control", "^1")).key_id == old_key.key_id
    # Rejected once, not at every poll; fixing the file is the next change.
    assert not reloader.changed()
    volume.write({"new.pub.json": public_file(new_key)})
    assert reloader.changed()
    assert await reloader.reload()
    with pytest.raises(UntrustedKeyError, match="no longer trusted"):
        await catalog.resolve("valve_control", "^1")
