"""Rules: which events trigger what (``rules.json``, beside connectors.json).

::

    {"version": 1, "rules": [{
        "name": "share-with-les-communs",
        "match": {"streams": ["recoco-events"], "type": "recommendation.created",
                  "payload.tags": {"contains": "les-communs"},
                  "if": "payload.status != 'draft'"},
        "steps": [
            {"id": "share", "call": "http_call", "version": "^1",
             "params": {"method": "POST", "url": "https://hub.example/share",
                        "json": {"id": "{{ payload.id }}"}}},
            {"if": "steps.share.status == 201",
             "then": [{"emit": {"stream": "shared", "event": {
                 "type": "recommendation.shared", "payload": {"id": "{{ payload.id }}"}}}}],
             "else": [{"call": "log", "params": {"message": "not shared"}}]}
        ]}]}

A rule matches an event when every part of ``match`` holds: ``stream(s)``
(default ``raw-input-signals``), ``source`` and ``type`` (a value or a list of
values), field conditions on dotted paths (``payload.value``: a value for
equality, or operators ``eq ne gt gte lt lte in not_in contains exists
matches``), and ``if``, a :mod:`framework.core.expressions` expression. Its steps
then run in order: ``call`` a capability, ``emit`` an event, or branch with
``if``/``then``/``else``. Parameters are :mod:`framework.consuming.rules.templating`
templates. :mod:`framework.consuming.rules.loader` reads the file into these
classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from framework.consuming.capabilities.spec import OnOpen
from framework.consuming.rules.matching import Match
from framework.consuming.rules.templating import Template
from framework.core.expressions import Expression
from framework.core.host_policy import HostPolicy
from framework.core.secrets import Secrets


@dataclass(frozen=True)
class CallStep:
    id: str
    capability_id: str
    version_range: str | None
    params: Template
    timeout_ms: int | None = None
    on_open: OnOpen | None = None
    # ``allowHosts``: the hosts the call may reach (HTTP capabilities); None = no
    # allow-list of the step's own (public hosts only, see framework.core.host_policy).
    hosts: HostPolicy | None = None


@dataclass(frozen=True)
class EmitStep:
    id: str
    stream: Template
    event: Template


@dataclass(frozen=True)
class BranchStep:
    id: str
    condition: Expression
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...]


Step = CallStep | EmitStep | BranchStep


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    steps: tuple[Step, ...]
    description: str = ""


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = "<rules>"
    by_stream: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    # Every value a ${VAR} took from the environment: redacted wherever printed.
    secrets: Secrets = field(default_factory=Secrets)

    @classmethod
    def of(cls, rules: Sequence[Rule], source: str = "<rules>",
           secrets: Secrets | None = None) -> RuleSet:
        by_stream: dict[str, list[Rule]] = {}
        for rule in rules:
            for stream in sorted(rule.match.streams):
                by_stream.setdefault(stream, []).append(rule)
        return cls(tuple(rules), source, {k: tuple(v) for k, v in by_stream.items()},
                   secrets or Secrets())

    @property
    def streams(self) -> list[str]:
        """The streams some rule listens to, sorted."""
        return sorted(self.by_stream)

    def candidates(self, stream: str) -> tuple[Rule, ...]:
        return self.by_stream.get(stream, ())
