"""``connector-fleet audit verify`` and ``audit show``: argument parsing and output only;
the work is :class:`framework.audit.AuditChain`."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

import orjson
from redis.asyncio import Redis

from framework.audit import AuditChain, AuditRecord
from framework.clock import Clock, SystemClock
from framework.errors import SigningKeyError
from framework.signing import TrustStore, load_trust_store, trust_store_from_env
from worker.commands import Console
from worker.exit_codes import ExitCode

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="the audit chain of capability executions")
    ops = audit.add_subparsers(dest="audit_command", required=True)
    verify = ops.add_parser("verify", help="walk the chain, report the first broken link")
    verify.add_argument("--trusted-keys", type=Path, default=None,
                        help="public keys that may sign records (file or directory; "
                             "default: $CATALOG_TRUSTED_KEYS / $CATALOG_TRUSTED_KEYS_JSON)")
    verify.add_argument("--require-signatures", action="store_true",
                        help="an unsigned record is a broken link")
    show = ops.add_parser("show", help="print records, oldest first")
    show.add_argument("--capability", default=None, help="only this capability id")
    show.add_argument("--kind", default=None,
                      help="only this kind (executed, refused, precondition_failed, "
                           "failed, rollback, permit_timeout)")
    show.add_argument("--since", default=None,
                      help="ISO 8601 time (2026-12-01T10:00:00Z) or an age (30s, 15m, 2h, 1d)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")


async def run_audit_command(redis: Redis, args: argparse.Namespace, console: Console,
                            clock: Clock | None = None) -> int:
    chain = AuditChain(redis)
    if args.audit_command == "verify":
        return await _verify(chain, args, console)
    try:
        since_ms = parse_since_ms(args.since, clock or SystemClock())
    except ValueError as exc:
        console.problem(str(exc))
        return ExitCode.USAGE
    async for record in chain.records(since_ms=since_ms, capability=args.capability,
                                      kind=args.kind):
        console.line(orjson.dumps(record.to_json()).decode() if args.json
                     else _one_line(record))
    return ExitCode.OK


async def _verify(chain: AuditChain, args: argparse.Namespace, console: Console) -> int:
    try:
        trust = _trust_store(args.trusted_keys)
    except SigningKeyError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    report = await chain.verify(trust, require_signatures=args.require_signatures)
    if report.broken is not None:
        console.problem(f"audit chain BROKEN after {report.records} good record(s): "
                        f"{report.broken}")
        return ExitCode.FAILURE
    signatures = f", {report.signed} signed" if trust is not None else ""
    console.line(f"audit chain OK: {report.records} record(s){signatures}, "
                 f"head {report.head_hash}")
    return ExitCode.OK


def _trust_store(path: Path | None) -> TrustStore | None:
    store = load_trust_store(path) if path is not None else trust_store_from_env()
    return store if store.keys else None


def parse_since_ms(text: str | None, clock: Clock) -> int | None:
    """Epoch milliseconds of ``--since``: an ISO 8601 time or an age such as ``15m``."""
    if text is None:
        return None
    relative = _RELATIVE.match(text.strip())
    if relative:
        age_s = float(relative.group(1)) * _UNIT_S[relative.group(2)]
        return int((clock.time() - age_s) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected an ISO 8601 time "
                         "(2026-12-01T10:00:00Z) or an age (30s, 15m, 2h, 1d)") from None
    if moment.tzinfo is None:
        raise ValueError(f"--since {text!r}: give a time zone (e.g. Z or +01:00)")
    return int(moment.timestamp() * 1000)


def _one_line(record: AuditRecord) -> str:
    body = record.body
    where = "/".join(str(body[k]) for k in ("rule", "step") if body.get(k))
    version = f"@{body['version']}" if body.get("version") else ""
    reason = body.get("reason") or body.get("condition") or ""
    return "  ".join(part for part in (
        f"#{record.seq}", str(body.get("at", "")), record.kind,
        f"{body.get('capability', '')}{version}", where, str(reason),
    ) if part)
