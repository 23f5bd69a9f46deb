"""``connector-fleet catalog keygen|register|list|show|verify|revoke``: argument parsing
and output only; the work is :class:`framework.trust.catalog.store.Catalog` and
:mod:`framework.trust.catalog.signing`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from redis.asyncio import Redis

from framework.core import (
    CatalogError,
    Clock,
    ConfigError,
    SigningKeyError,
    SystemClock,
    get_logger,
)
from framework.trust import (
    Catalog,
    CatalogEntry,
    PrivateKey,
    TrustStore,
    load_trust_store,
    parse_definition,
    trust_store_from_env,
)
from worker.cli.output import Console
from worker.cli.session import redis_command
from worker.exit_codes import ExitCode

_TRUST_HELP = ("trusted public keys (file or directory; default: $CATALOG_TRUSTED_KEYS "
               "and $CATALOG_TRUSTED_KEYS_JSON)")


def add_catalog_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    catalog = subparsers.add_parser("catalog", help="the signed capability catalog")
    catalog.set_defaults(handler=redis_command(
        lambda redis, args, session: run_catalog_command(redis, args, session.console)))
    ops = catalog.add_subparsers(dest="catalog_command", required=True)
    keygen = ops.add_parser("keygen", help="write a new Ed25519 signing key pair")
    keygen.add_argument("--out", type=Path, required=True, help="directory to write to")
    keygen.add_argument("--name", default="catalog-signing",
                        help="file name stem: NAME.pem (private) and NAME.pub.json (public)")
    keygen.add_argument("--expires-in-days", type=float, default=None,
                        help="expiry written into the public key entry (default: none)")
    register = ops.add_parser("register", help="sign (optionally) and store definitions")
    register.add_argument("--file", type=Path, action="append", required=True,
                          help="a definition JSON file (repeatable)")
    register.add_argument("--sign-with", type=Path, default=None,
                          help="private key (PEM) to sign with; without it the files "
                               "must already be signed")
    register.add_argument("--replace", action="store_true",
                          help="overwrite a stored version whose definition differs")
    register.add_argument("--trusted-keys", type=Path, default=None, help=_TRUST_HELP)
    listing = ops.add_parser("list", help="every stored version and its status")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--trusted-keys", type=Path, default=None, help=_TRUST_HELP)
    show = ops.add_parser("show", help="print a stored definition")
    show.add_argument("id")
    show.add_argument("--version", default=None, help="default: the newest")
    verify = ops.add_parser("verify", help="check every stored definition's signature")
    verify.add_argument("--trusted-keys", type=Path, default=None, help=_TRUST_HELP)
    revoke = ops.add_parser("revoke", help="revoke every version in a range, everywhere")
    revoke.add_argument("id")
    revoke.add_argument("--version", required=True, dest="version_range",
                        help='a version range, e.g. "<1.1.0", "^1.0", "1.0.3"')
    revoke.add_argument("--reason", required=True)


async def run_catalog_command(redis: Redis, args: argparse.Namespace, console: Console, *,
                              environ: Mapping[str, str] = os.environ,
                              clock: Clock | None = None) -> int:
    """Run one ``catalog`` subcommand; returns the exit code."""
    clock = clock or SystemClock()
    if args.catalog_command == "keygen":
        return keygen(args.out, console, name=args.name,
                      expires_in_days=args.expires_in_days, clock=clock)
    try:
        trust = _trust(getattr(args, "trusted_keys", None), environ)
    except SigningKeyError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    catalog = Catalog(redis, trust, clock=clock, logger=get_logger(component="catalog"))
    try:
        if args.catalog_command == "register":
            return await _register(catalog, args, console)
        if args.catalog_command == "list":
            return _list(await catalog.entries(), console, as_json=args.json)
        if args.catalog_command == "show":
            definition = await catalog.show(args.id, args.version)
            console.line(orjson.dumps(definition.fields(), option=orjson.OPT_INDENT_2
                                      | orjson.OPT_SORT_KEYS).decode())
            return ExitCode.OK
        if args.catalog_command == "verify":
            return _verify(await catalog.entries(), console, trusted=len(trust.keys))
        revocation = await catalog.revoke(args.id, args.version_range, args.reason)
    except (CatalogError, ConfigError) as exc:
        console.problem(str(exc))
        return ExitCode.FAILURE
    hit = ", ".join(revocation.versions) or "no version registered yet"
    console.line(f"revoked {args.id} {revocation.version_range} ({hit}): {revocation.reason}")
    return ExitCode.OK


def _trust(path: Path | None, environ: Mapping[str, str]) -> TrustStore:
    return load_trust_store(path) if path is not None else trust_store_from_env(environ)


def keygen(out: Path, console: Console, *, name: str, expires_in_days: float | None,
           clock: Clock) -> int:
    """Write ``out/NAME.pem`` (mode 0600) and ``out/NAME.pub.json``; never overwrite."""
    private_path, public_path = out / f"{name}.pem", out / f"{name}.pub.json"
    key = PrivateKey.generate()
    expires_at = None
    if expires_in_days is not None:
        expires_at = (datetime.fromtimestamp(clock.time(), tz=UTC)
                      + timedelta(days=expires_in_days))
    try:
        out.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never replace a key someone relies on; 0o600 from the first byte.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key.to_pem())
        public = key.public(expires_at=expires_at, name=name).to_json()
        public_path.write_bytes(orjson.dumps(public, option=orjson.OPT_INDENT_2) + b"\n")
    except FileExistsError:
        console.problem(f"{private_path} already exists: not overwritten (choose --name)")
        return ExitCode.USAGE
    except OSError as exc:
        console.problem(f"cannot write the key pair in {out}: {exc}")
        return ExitCode.FAILURE
    console.line(f"key {key.key_id}: private {private_path} (keep it secret), "
                 f"public {public_path} (add it to the trusted keys)")
    return ExitCode.OK


async def _register(catalog: Catalog, args: argparse.Namespace, console: Console) -> int:
    try:
        key = PrivateKey.load(args.sign_with) if args.sign_with else None
    except SigningKeyError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    failed = 0
    # Each file on its own: one bad definition does not stop the others.
    for path in args.file:
        try:
            definition = parse_definition(_read(path), source=str(path))
            if key is not None:
                definition = definition.signed_with(key)
            registered = await catalog.register(definition, replace=args.replace)
        except CatalogError as exc:
            console.problem(f"{path}: {exc}")
            failed += 1
            continue
        console.line(f"registered {registered.definition.key} "
                     f"(signed by {registered.key_id}, sha256 {registered.definition_hash[:12]})")
    return ExitCode.FAILURE if failed else ExitCode.OK


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from None


def _status(entry: CatalogEntry) -> str:
    if entry.revocation is not None:
        return f"REVOKED ({entry.revocation.version_range}): {entry.revocation.reason}"
    if entry.problem is not None:
        return f"REFUSED: {entry.problem}"
    return f"ok (key {entry.key_id})"


def _list(entries: list[CatalogEntry], console: Console, *, as_json: bool) -> int:
    if as_json:
        console.json([{
            "id": e.capability_id, "version": e.version, "keyId": e.key_id,
            "problem": e.problem,
            "revoked": None if e.revocation is None else {
                "range": e.revocation.version_range, "reason": e.revocation.reason,
                "revokedAt": e.revocation.revoked_at},
        } for e in entries])
        return ExitCode.OK
    if not entries:
        console.line("the catalog is empty")
    for entry in entries:
        console.line(f"{entry.capability_id}@{entry.version}  {_status(entry)}")
    return ExitCode.OK


def _verify(entries: list[CatalogEntry], console: Console, *, trusted: int) -> int:
    failures = [entry for entry in entries if entry.problem is not None]
    for entry in failures:
        console.problem(f"FAILED {entry.problem}")
    revoked = sum(1 for entry in entries if entry.revocation is not None)
    summary = (f"{len(entries)} definition(s), {len(failures)} failed, {revoked} revoked, "
               f"{trusted} trusted key(s)")
    if failures:
        console.problem(f"catalog verify: {summary}")
        return ExitCode.FAILURE
    console.line(f"catalog OK: {summary}")
    return ExitCode.OK
