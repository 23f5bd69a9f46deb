"""``connector-fleet rules check``: validate the rules file before a consumer loads it.

Parsing and output only; the work is :func:`framework.consuming.rules.model.load_rules` and
:class:`framework.consuming.capabilities.registry.CapabilityRegistry`.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
from pathlib import Path

from framework.consuming import BranchStep, CallStep, CapabilityRegistry, Step, load_rules
from framework.core import ConfigError, Settings, UnknownCapabilityError
from worker.cli.output import Console
from worker.cli.session import command
from worker.exit_codes import ExitCode


def add_rules_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = subparsers.add_parser("rules", help="the rules file (rules.json)")
    rules.set_defaults(handler=command(
        lambda args, session: run_rules_command(args, session.settings, session.console)))
    ops = rules.add_subparsers(dest="rules_command", required=True)
    check = ops.add_parser(
        "check", help="validate the rules (every problem listed) and resolve their capabilities")
    check.add_argument("--path", type=Path, default=None,
                       help="rules file (default: $RULES_PATH, else rules.json beside "
                            "connectors.json)")


def run_rules_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    path = args.path or settings.resolved_rules_path
    try:
        rule_set = load_rules(path)
    except ConfigError as exc:
        console.problem(str(exc))
        return ExitCode.CONFIG
    registry = asyncio.run(_capabilities())
    for rule in rule_set.rules:
        calls = list(_calls(rule.steps))
        console.line(f"{rule.name}: streams {', '.join(sorted(rule.match.streams))}; "
                     f"{_count_steps(rule.steps)} steps; calls "
                     f"{', '.join(_resolved(registry, call) for call in calls) or 'none'}")
    misspelt = 0
    for rule in rule_set.rules:
        for call in _calls(rule.steps):
            try:
                registry.resolve(call.capability_id, call.version_range)
            except UnknownCapabilityError as exc:
                near = _near_miss(registry, call.capability_id)
                if near is None:
                    # A catalog capability may be known only to the signed catalog: warn.
                    console.problem(f"warning: rule {rule.name}, step {call.id}: {exc}")
                    continue
                misspelt += 1
                console.problem(f"rule {rule.name}, step {call.id}: capability "
                                f"{call.capability_id!r} is not registered; did you mean "
                                f"{near!r}?")
    if misspelt:
        console.problem(f"{path}: {misspelt} misspelt capability names")
        return ExitCode.CONFIG
    console.line(f"{path}: {len(rule_set.rules)} rules OK, streams: "
                 f"{', '.join(rule_set.streams) or 'none'}")
    return ExitCode.OK


def _near_miss(registry: CapabilityRegistry, capability_id: str) -> str | None:
    """The registered id ``capability_id`` is most likely a misspelling of, if any
    (an id with no registered version that differs from one by a letter or two)."""
    if registry.versions(capability_id):
        return None  # registered; only the version range does not match
    known = sorted({key.split("@", 1)[0] for key in registry.keys})
    close = difflib.get_close_matches(capability_id, known, n=1, cutoff=0.8)
    return close[0] if close else None


async def _capabilities() -> CapabilityRegistry:
    from providers.builtin import default_capability_registry

    registry, http = default_capability_registry()
    await http.aclose()
    return registry


def _calls(steps: tuple[Step, ...]) -> list[CallStep]:
    found: list[CallStep] = []
    for step in steps:
        if isinstance(step, CallStep):
            found.append(step)
        elif isinstance(step, BranchStep):
            found.extend(_calls(step.then))
            found.extend(_calls(step.otherwise))
    return found


def _count_steps(steps: tuple[Step, ...]) -> int:
    return sum(1 + (_count_steps(step.then) + _count_steps(step.otherwise)
                    if isinstance(step, BranchStep) else 0) for step in steps)


def _resolved(registry: CapabilityRegistry, call: CallStep) -> str:
    try:
        return registry.resolve(call.capability_id, call.version_range).key
    except UnknownCapabilityError:
        return f"{call.capability_id}@{call.version_range or '*'} (unresolved)"
