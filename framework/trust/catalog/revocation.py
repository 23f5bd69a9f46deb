"""Revocations: a version range of a capability that must not run, with the reason."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from framework.core.errors import InvalidDefinitionError, RevokedCapabilityError, VersionError
from framework.core.versions import VersionRange


@dataclass(frozen=True)
class Revocation:
    capability_id: str
    version_range: str
    reason: str
    revoked_at: str
    # The registered versions the range matched when it was recorded.
    versions: tuple[str, ...] = ()

    def covers(self, version: str) -> bool:
        return VersionRange.parse(self.version_range).matches(version)

    def to_json(self) -> str:
        return orjson.dumps({
            "id": self.capability_id, "range": self.version_range, "reason": self.reason,
            "revokedAt": self.revoked_at, "versions": list(self.versions),
        }).decode()

    @classmethod
    def from_json(cls, text: str, *, source: str) -> Revocation:
        """Parse a stored revocation; one that cannot be read is an error (never
        ignored: that would run what an operator revoked)."""
        try:
            raw = orjson.loads(text)
            revocation = cls(str(raw["id"]), str(raw["range"]), str(raw["reason"]),
                             str(raw["revokedAt"]), tuple(raw.get("versions", ())))
            VersionRange.parse(revocation.version_range)
        except (orjson.JSONDecodeError, KeyError, TypeError, VersionError) as exc:
            raise InvalidDefinitionError(
                f"{source}: unreadable revocation ({type(exc).__name__}: {exc}); "
                "nothing of this capability runs until it is fixed") from None
        return revocation

    def refusal(self, version: str) -> RevokedCapabilityError:
        """The error that refuses ``version`` of the capability."""
        return RevokedCapabilityError(
            f"revoked (range {self.version_range}, {self.revoked_at}): {self.reason}",
            capability=f"{self.capability_id}@{version}", reason=self.reason,
        )
