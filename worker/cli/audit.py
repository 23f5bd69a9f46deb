"""``connector-fleet audit verify|show|export|trim``: argument parsing and output only;
the work is :class:`framework.trust.audit.chain.AuditChain` and
:class:`framework.trust.audit.archive.AuditArchive`."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import orjson
from redis.asyncio import Redis

from framework.core import AuditTrimError, Clock, SigningKeyError, SystemClock
from framework.trust import (
    ArchiveReport,
    AuditArchive,
    AuditChain,
    AuditRecord,
    ExportSink,
    ExportSummary,
    PrivateKey,
    TrimPlan,
    TrustStore,
    VerifyReport,
    load_trust_store,
    trust_store_from_env,
    verify_archive,
)
from worker.cli.output import Confirm, Console, ask_on_terminal
from worker.cli.session import redis_command
from worker.exit_codes import ExitCode

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="the audit chain of capability executions")
    audit.set_defaults(handler=redis_command(
        lambda redis, args, session: run_audit_command(
            redis, args, session.console, confirm=session.confirm,
            signing_key_path=session.settings.audit_signing_key,
            chains=session.settings.audit_chains)))
    audit.add_argument("--chain", type=_count, default=None, metavar="I",
                       help="which chain, when FLEET_AUDIT_CHAINS spreads the records over "
                            "several (0 .. N-1)")
    ops = audit.add_subparsers(dest="audit_command", required=True)
    verify = ops.add_parser("verify", help="walk the chain (from its checkpoint), report the "
                                           "first broken link")
    verify.add_argument("--file", dest="files", type=Path, action="append", default=None,
                        metavar="FILE", help="verify this export instead (repeat, oldest "
                                             "first) and join it to the live checkpoint")
    verify.add_argument("--no-live", action="store_true",
                        help="with --file: only the files' own links, without Redis")
    _add_trust_options(verify)
    export = ops.add_parser("export", help="write records, oldest first, as JSON lines "
                                           "(to archive them before a trim)")
    export.add_argument("--to", type=Path, default=None, metavar="FILE",
                        help="a new file to write (default: stdout)")
    until = export.add_mutually_exclusive_group()
    until.add_argument("--before", type=_positive, default=None, metavar="SEQ",
                       help="only the records with a lower seq")
    until.add_argument("--older-than", default=None, metavar="DURATION",
                       help="only the records older than this age (30s, 15m, 2h, 7d)")
    trim = ops.add_parser("trim", help="remove the oldest records, leaving a checkpoint")
    trim.add_argument("--keep", type=_count, default=None, metavar="N",
                      help="keep the N newest records")
    trim.add_argument("--before", type=_positive, default=None, metavar="SEQ",
                      help="remove the records with a lower seq (with --keep: the stricter)")
    trim.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_trust_options(trim)
    show = ops.add_parser("show", help="print records, oldest first")
    show.add_argument("--capability", default=None, help="only this capability id")
    show.add_argument("--kind", default=None,
                      help="only this kind (executed, refused, precondition_failed, "
                           "failed, rollback, permit_timeout)")
    show.add_argument("--since", default=None,
                      help="ISO 8601 time (2026-12-01T10:00:00Z) or an age (30s, 15m, 2h, 1d)")
    show.add_argument("--json", action="store_true", help="one JSON object per line")


def _add_trust_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trusted-keys", type=Path, default=None,
                        help="public keys that may sign records and checkpoints (file or "
                             "directory; default: $CATALOG_TRUSTED_KEYS / "
                             "$CATALOG_TRUSTED_KEYS_JSON)")
    parser.add_argument("--require-signatures", action="store_true",
                        help="an unsigned record or checkpoint is a broken link")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    return value


async def run_audit_command(redis: Redis, args: argparse.Namespace, console: Console,
                            clock: Clock | None = None, *, confirm: Confirm = ask_on_terminal,
                            signing_key_path: Path | None = None, chains: int = 1) -> int:
    clock = clock or SystemClock()
    index = getattr(args, "chain", None)
    if chains > 1 and (index is None or index >= chains):
        console.problem(f"audit: FLEET_AUDIT_CHAINS is {chains}: give --chain 0 .. "
                        f"{chains - 1} (each consumer process appends to one)")
        return ExitCode.USAGE
    if chains == 1 and index is not None:
        console.problem("audit: --chain needs FLEET_AUDIT_CHAINS above 1 (there is one chain)")
        return ExitCode.USAGE
    chain = AuditChain(redis, clock=clock, chain=index)
    if args.audit_command == "verify" and args.files:
        return await _verify_files(chain, args, console)
    if args.audit_command == "verify" and args.no_live:
        console.problem("audit verify: --no-live only applies with --file")
        return ExitCode.USAGE
    if args.audit_command == "verify":
        return await _verify(chain, args, console)
    if args.audit_command == "export":
        return await _export(AuditArchive(redis, chain=chain, clock=clock), args, console, clock)
    if args.audit_command == "trim":
        return await _trim(redis, chain, args, console, confirm=confirm, clock=clock,
                           signing_key_path=signing_key_path)
    try:
        since_ms = parse_since_ms(args.since, clock)
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
    console.line(f"audit chain OK: {report.records} record(s){signatures}"
                 f"{_since_checkpoint(report)}, head {report.head_hash}")
    return ExitCode.OK


def _since_checkpoint(report: VerifyReport) -> str:
    checkpoint = report.checkpoint
    if checkpoint is None:
        return ""
    signed = "signed" if checkpoint.signature else "unsigned"
    return f", after the checkpoint at seq {checkpoint.seq} ({signed}, {checkpoint.at})"


async def _verify_files(chain: AuditChain, args: argparse.Namespace, console: Console) -> int:
    try:
        trust = _trust_store(args.trusted_keys)
    except SigningKeyError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    report = await verify_archive(chain, args.files, trust=trust,
                                  require_signatures=args.require_signatures,
                                  live=not args.no_live)
    if report.broken is not None:
        console.problem(f"audit archive BROKEN after {report.records} good record(s): "
                        f"{report.broken}")
        return ExitCode.FAILURE
    if report.problem is not None:
        console.problem(f"audit archive does not join the live chain: {report.problem}")
        return ExitCode.FAILURE
    signatures = f", {report.signed} signed" if trust is not None else ""
    console.line(f"audit archive OK: {report.records} record(s){_seq_range(report)}"
                 f"{signatures}, last hash {report.last_hash}; {_joined(report)}")
    return ExitCode.OK


def _seq_range(report: ArchiveReport) -> str:
    if report.first_seq is None or report.last_seq is None:
        return ""
    start = report.checkpoint.seq if report.checkpoint else 0
    anchored = report.first_seq == 1 or (report.joined and report.first_seq == start + 1)
    unanchored = "" if anchored else " (the first link needs the archive before it)"
    return f", seq {report.first_seq}..{report.last_seq}{unanchored}"


def _joined(report: ArchiveReport) -> str:
    if not report.joined:
        return "not joined to the live chain (--no-live)"
    where = (f"the checkpoint at seq {report.checkpoint.seq}" if report.checkpoint
             else "the start of the live chain (never trimmed)")
    also = (f"; its {report.compared} record(s) still in the live chain match it"
            if report.compared else "")
    return f"joins {where}{also}"


async def _export(archive: AuditArchive, args: argparse.Namespace, console: Console,
                  clock: Clock) -> int:
    before_ms = None
    if args.older_than is not None:
        age_s = parse_age_s(args.older_than)
        if age_s is None:
            console.problem(f"--older-than {args.older_than!r}: expected an age "
                            "(30s, 15m, 2h, 7d)")
            return ExitCode.USAGE
        before_ms = int((clock.time() - age_s) * 1000)
    if args.to is None:
        summary = await archive.export(_writer(sys.stdout.buffer), before_seq=args.before,
                                       before_ms=before_ms)
        console.problem(_exported(summary, "stdout"))
        return ExitCode.OK
    if args.to.exists():
        console.problem(f"export: {args.to} exists; not overwritten (give a new file)")
        return ExitCode.USAGE
    partial = args.to.with_name(f"{args.to.name}.partial")
    try:
        handle = await asyncio.to_thread(partial.open, "wb")
    except OSError as exc:
        console.problem(f"export: cannot write {partial}: {exc.strerror}")
        return ExitCode.FAILURE
    try:
        summary = await archive.export(_writer(handle), before_seq=args.before,
                                       before_ms=before_ms)
        await asyncio.to_thread(_seal, handle, partial, args.to)
    except BaseException:
        handle.close()
        partial.unlink(missing_ok=True)
        raise
    console.line(_exported(summary, str(args.to)))
    return ExitCode.OK


def _writer(handle: BinaryIO) -> ExportSink:
    async def write(chunk: bytes) -> None:
        await asyncio.to_thread(handle.write, chunk)
    return write


def _seal(handle: BinaryIO, partial: Path, final: Path) -> None:
    """Make the export durable before it gets its name: a trim may follow at once."""
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    partial.replace(final)


def _exported(summary: ExportSummary, where: str) -> str:
    if not summary.records or summary.last_seq is None:
        return f"exported {summary.records} record(s) to {where}"
    return (f"exported {summary.records} record(s), seq {summary.first_seq}.."
            f"{summary.last_seq} (last hash {summary.last_hash}), to {where}; "
            f"`audit trim --before {summary.last_seq + 1}` removes exactly these")


async def _trim(redis: Redis, chain: AuditChain, args: argparse.Namespace, console: Console,
                *, confirm: Confirm, clock: Clock, signing_key_path: Path | None) -> int:
    if args.keep is None and args.before is None:
        console.problem("audit trim: give --keep N (records to keep) or --before SEQ "
                        "(first seq to keep), or both")
        return ExitCode.USAGE
    try:
        trust = _trust_store(args.trusted_keys)
        key = PrivateKey.load(signing_key_path) if signing_key_path else None
    except SigningKeyError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    archive = AuditArchive(redis, chain=chain, signing_key=key, clock=clock)
    try:
        plan = await archive.plan_trim(keep=args.keep, before_seq=args.before, trust=trust,
                                       require_signatures=args.require_signatures)
        if plan is None:
            console.line(f"{chain.stream}: nothing to trim")
            return ExitCode.OK
        if not confirm(_trim_question(chain, plan)):
            console.problem("not trimmed (confirm, or pass --yes)")
            return ExitCode.FAILURE
        result = await archive.trim(plan)
    except AuditTrimError as exc:
        console.problem(str(exc))
        return ExitCode.FAILURE
    checkpoint = result.checkpoint
    signed = (f"signed with key {key.key_id}" if key is not None
              else "unsigned (AUDIT_SIGNING_KEY is not set)")
    console.line(f"trimmed {result.removed} record(s), seq {plan.first_seq}..{checkpoint.seq}, "
                 f"from {chain.stream}; checkpoint at seq {checkpoint.seq} "
                 f"(hash {checkpoint.hash}), {signed}")
    return ExitCode.OK


def _trim_question(chain: AuditChain, plan: TrimPlan) -> str:
    return (f"Remove {plan.records} audit record(s), seq {plan.first_seq}..{plan.last.seq}, "
            f"from {chain.stream}? Only a checkpoint of seq {plan.last.seq} remains: export "
            f"them first (audit export --before {plan.last.seq + 1} --to FILE).")


def _trust_store(path: Path | None) -> TrustStore | None:
    store = load_trust_store(path) if path is not None else trust_store_from_env()
    return store if store.keys else None


def parse_age_s(text: str) -> float | None:
    """Seconds of an age such as ``15m`` or ``7d``; None if it is not one."""
    relative = _RELATIVE.match(text.strip())
    if relative is None:
        return None
    return float(relative.group(1)) * _UNIT_S[relative.group(2)]


def parse_since_ms(text: str | None, clock: Clock) -> int | None:
    """Epoch milliseconds of ``--since``: an ISO 8601 time or an age such as ``15m``."""
    if text is None:
        return None
    age_s = parse_age_s(text)
    if age_s is not None:
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
