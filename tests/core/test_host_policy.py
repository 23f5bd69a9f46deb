"""Host allow-lists and the address classes refused unless named (framework.core.host_policy)."""

from __future__ import annotations

import pytest

from framework.core.host_policy import HostPolicy

LISTED = HostPolicy.of(
    ["api.example.com", "*.example.org:443", "[::1]:8089", "10.0.0.0/8", "127.0.0.1:8089"]
)


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("api.example.com", 443),
        ("API.Example.com.", 80),
        ("a.b.example.org", 443),
        ("::1", 8089),
        ("[::1]", 8089),
        ("10.2.3.4", 80),
        ("127.0.0.1", 8089),
    ],
)
def test_listed_hosts_pass_by_name(host: str, port: int) -> None:
    assert LISTED.refuse_name(host, port) is None


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("example.org", 443),
        ("a.example.org", 80),
        ("api.example.com.evil.net", 443),
        ("::1", 6379),
        ("127.0.0.1", 6379),
        ("11.0.0.1", 80),
        ("localhost", 8089),
    ],
)
def test_other_hosts_and_ports_are_refused_by_name(host: str, port: int) -> None:
    assert "is not in the allow-list" in (LISTED.refuse_name(host, port) or "")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_non_public_addresses_are_refused_without_an_explicit_entry(
    address: str, kind: str
) -> None:
    refusal = HostPolicy().refuse_address("svc.test", 80, address)
    assert refusal is not None and f"a {kind} address" in refusal
    assert HostPolicy().refuse_address("svc.test", 80, "93.184.216.34") is None


def test_an_address_is_allowed_by_its_network_or_the_exact_name_never_a_pattern() -> None:
    assert LISTED.refuse_address("10.9.9.9", 80, "10.9.9.9") is None
    assert HostPolicy.of(["svc.test"]).refuse_address("svc.test", 80, "127.0.0.1") is None
    assert HostPolicy.of(["*.test"]).refuse_address("svc.test", 80, "127.0.0.1") is not None
    # Every list must name it: the capability's and the step's.
    both = HostPolicy.of(["svc.test"]).narrowed(HostPolicy.of(["*.test"]))
    assert both.refuse_address("svc.test", 80, "127.0.0.1") is not None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("exa mple.com", "expected a host name"),
        ("*.", "expected a host name"),
        ("10.0.0.0/33", "not a network"),
        ("host:0", "port must be 1-65535"),
        ("[::1]:x", "port must be 1-65535"),
    ],
)
def test_a_bad_entry_names_itself(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        HostPolicy.of([entry])
    assert repr(entry) in str(caught.value)
