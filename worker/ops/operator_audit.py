"""Who changed what: every mutating call of the control API (and ``tokens``
commands) becomes an ``operator_action`` record in the audit chain, so that the
same ``audit verify`` proves what operators did and what capabilities did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from framework.core import Clock
from framework.trust import AuditChain, AuditRecord, PrivateKey

OPERATOR_ACTION = "operator_action"


@dataclass(frozen=True)
class Actor:
    """Who makes a request: a token's id, name and role, or a command line user."""

    id: str
    name: str
    role: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role}


class OperatorAudit:
    """Appends operator actions to the chain (signed when a signing key is given)."""

    def __init__(self, redis: Redis, *, clock: Clock, signing_key: PrivateKey | None = None
                 ) -> None:
        self.chain = AuditChain(redis, signing_key=signing_key, clock=clock)

    @classmethod
    def from_key_file(cls, redis: Redis, *, clock: Clock, key_path: Path | None
                      ) -> OperatorAudit:
        """``key_path``: AUDIT_SIGNING_KEY (a PEM Ed25519 key), or None for unsigned."""
        key = PrivateKey.load(key_path) if key_path is not None else None
        return cls(redis, clock=clock, signing_key=key)

    async def record(self, actor: Actor, action: str, target: str,
                     details: dict[str, Any] | None = None) -> AuditRecord:
        return await self.chain.append(OPERATOR_ACTION, {
            "actor": actor.as_json(), "action": action, "target": target,
            "details": details or {}})
