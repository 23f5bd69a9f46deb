"""The capability registry: :class:`CapabilitySpec` by id and version.

Built-in capabilities are registered by
:func:`providers.builtin.register_builtin_capabilities`; another distribution
adds its own through an entry point in the ``connector_fleet.capabilities``
group whose object is a ``CapabilitySpec`` or a function returning a list of
them::

    [project.entry-points."connector_fleet.capabilities"]
    open_valve = "my_package.valves:OPEN_VALVE"

A call names an id and a version range (``^1``, ``>=1.0,<2``, ``1.2.3``;
:mod:`framework.core.versions`); the newest registered version inside the range runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

from framework.consuming.capabilities.spec import CAPABILITY_ENTRY_POINT_GROUP, CapabilitySpec
from framework.core.errors import UnknownCapabilityError
from framework.core.versions import VersionRange, newest_matching, parse_version


class CapabilityRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, dict[str, CapabilitySpec]] = {}
        # Every call resolves its range: parsing it each time would cost more than the call.
        self._resolved: dict[tuple[str, str | None], CapabilitySpec] = {}

    def register(self, spec: CapabilitySpec, *, replace: bool = False) -> None:
        parse_version(spec.version)
        versions = self._specs.setdefault(spec.id, {})
        if spec.version in versions and not replace:
            raise ValueError(f"capability {spec.key} is already registered")
        versions[spec.version] = spec
        self._resolved.clear()

    def load_entry_points(self, group: str = CAPABILITY_ENTRY_POINT_GROUP) -> list[str]:
        """Register what other installed distributions declare; returns the keys added."""
        loaded: list[str] = []
        for entry_point in entry_points(group=group):
            target = entry_point.load()
            specs = target() if callable(target) and not isinstance(target, CapabilitySpec) \
                else target
            for spec in _as_specs(specs, entry_point.name):
                if spec.version not in self._specs.get(spec.id, {}):
                    self.register(spec)
                    loaded.append(spec.key)
        return loaded

    @property
    def keys(self) -> list[str]:
        return sorted(spec.key for versions in self._specs.values() for spec in versions.values())

    def versions(self, capability_id: str) -> list[str]:
        return sorted(self._specs.get(capability_id, {}), key=parse_version)

    def resolve(self, capability_id: str, version_range: str | None = None) -> CapabilitySpec:
        """The newest version of ``capability_id`` inside the range."""
        found = self._resolved.get((capability_id, version_range))
        if found is None:
            found = self._resolved[(capability_id, version_range)] = self._newest(
                capability_id, version_range)
        return found

    def _newest(self, capability_id: str, version_range: str | None) -> CapabilitySpec:
        versions = self._specs.get(capability_id)
        if not versions:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownCapabilityError(
                f"not registered (registered: {known})", capability=capability_id
            )
        wanted = VersionRange.parse(version_range)
        version = newest_matching(versions, wanted)
        if version is None:
            raise UnknownCapabilityError(
                f"no registered version matches {wanted} "
                f"(registered: {', '.join(self.versions(capability_id))})",
                capability=capability_id,
            )
        return versions[version]

    def lookup(self, handler: str) -> CapabilitySpec:
        """The spec a catalog definition's ``handler`` names: ``id@version`` exactly,
        or an id (its newest version)."""
        return self.get(handler) if "@" in handler else self.resolve(handler)

    def get(self, key: str) -> CapabilitySpec:
        """The spec registered under ``id@version`` exactly."""
        capability_id, _, version = key.partition("@")
        found = self._specs.get(capability_id, {}).get(version)
        if found is None:
            raise UnknownCapabilityError("not registered", capability=key)
        return found


def _as_specs(value: object, name: str) -> Iterable[CapabilitySpec]:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, CapabilitySpec):
            raise TypeError(
                f"entry point {name} in {CAPABILITY_ENTRY_POINT_GROUP} gave "
                f"{type(item).__name__}, expected CapabilitySpec"
            )
        yield item
