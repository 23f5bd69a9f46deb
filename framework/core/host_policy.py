"""Which hosts an outgoing call may reach: allow-lists, and no private targets.

An allow-list names hosts exactly (``api.example.com``, ``api.example.com:8443``),
by subdomain (``*.example.com``: any name under it, not the name itself), or by
address (``127.0.0.1``, ``[::1]:8089``, ``10.0.0.0/8``); an entry with a port allows
that port only. A :class:`HostPolicy` is every allow-list that applies to a call
(the capability's and the rule step's): a target must pass each of them. With no
allow-list, any host passes by name.

Whatever the names say, a target whose address is private, loopback, link-local,
multicast, unspecified or otherwise not globally routable is refused unless each
allow-list names it **explicitly**: by an address or network containing it, or by
its exact host name (a ``*.`` entry never does: whoever controls a subdomain's DNS
could point it anywhere). The address check is made on every address a name
resolves to, and the connection then goes to a checked address
(``providers.http``), so DNS cannot swap it in between.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from framework.core.errors import DeadLetterError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedTargetError(DeadLetterError):
    """A call target refused by the host policy: never retried, dead-lettered."""


@dataclass(frozen=True)
class _Entry:
    # Exactly one of name, suffix (".example.com") or network is set.
    name: str | None = None
    suffix: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches_name(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return host == self.name
        if self.suffix is not None:
            return host.endswith(self.suffix)
        address = _address(host)
        return address is not None and self.network is not None and address in self.network

    def names_explicitly(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        return self.name is not None and host == self.name


@dataclass(frozen=True)
class AllowList:
    """One allow-list, parsed; ``text`` is what it was written as."""

    entries: tuple[_Entry, ...]
    text: str

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """ValueError naming the first entry that is not a host, pattern or network."""
        items = list(entries)
        return cls(tuple(_parse_entry(item) for item in items), ", ".join(items))

    def allows_name(self, host: str, port: int) -> bool:
        return any(entry.matches_name(host, port) for entry in self.entries)

    def names_explicitly(self, host: str, port: int, address: IPAddress) -> bool:
        return any(entry.names_explicitly(host, port, address) for entry in self.entries)


@dataclass(frozen=True)
class HostPolicy:
    """Every allow-list that applies to a call; none: any public host."""

    allow_lists: tuple[AllowList, ...] = ()

    @classmethod
    def of(cls, *entries: Iterable[str]) -> HostPolicy:
        return cls(tuple(AllowList.parse(items) for items in entries))

    def narrowed(self, other: HostPolicy | None) -> HostPolicy:
        """This policy and ``other``'s allow-lists: a target must pass them all."""
        return self if other is None else HostPolicy(self.allow_lists + other.allow_lists)

    def refuse_name(self, host: str, port: int) -> str | None:
        """Why ``host:port`` is refused by name, or None."""
        host = _normal(host)
        for allow_list in self.allow_lists:
            if not allow_list.allows_name(host, port):
                return f"host {host}:{port} is not in the allow-list ({allow_list.text})"
        return None

    def refuse_address(self, host: str, port: int, address: str) -> str | None:
        """Why connecting to ``address`` (what ``host`` resolved to) is refused, or None."""
        host = _normal(host)
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        kind = special_kind(parsed)
        if kind is None:
            return None
        if self.allow_lists and all(
            allow_list.names_explicitly(host, port, parsed) for allow_list in self.allow_lists
        ):
            return None
        via = "" if _address(host) is not None else f" resolves to {parsed}, which"
        return (
            f"host {host}{via} is a {kind} address: refused unless the allow-list "
            f"names it explicitly (its address, a network or the exact host name)"
        )


def special_kind(address: IPAddress) -> str | None:
    """What makes ``address`` a non-public target ("loopback"...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
    ):
        if flag:
            return kind
    return None if address.is_global else "non-public"


def _normal(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _parse_entry(text: str) -> _Entry:
    raw = text.strip().lower()
    host, port = _split_port(raw, text)
    if "/" in host:
        try:
            return _Entry(network=ipaddress.ip_network(host, strict=False), port=port)
        except ValueError:
            raise ValueError(f"allowHosts entry {text!r}: not a network (10.0.0.0/8)") from None
    address = _address(host)
    if address is not None:
        return _Entry(network=ipaddress.ip_network(address), port=port)
    if host.startswith("*."):
        _check_name(host[2:], text)
        return _Entry(suffix=host[1:], port=port)
    _check_name(host, text)
    return _Entry(name=host.rstrip("."), port=port)


def _split_port(raw: str, text: str) -> tuple[str, int | None]:
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    else:
        host, port_text = raw, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"allowHosts entry {text!r}: the port must be 1-65535")
    return host, int(port_text)


def _check_name(name: str, text: str) -> None:
    labels = name.rstrip(".").split(".")
    if not name or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels
    ):
        raise ValueError(
            f"allowHosts entry {text!r}: expected a host name, *.domain, an address or a network"
        )
