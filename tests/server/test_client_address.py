"""The client address limits count against: the socket's, or X-Forwarded-For from a trusted proxy only."""

from __future__ import annotations

import falcon.testing
import pytest

from server.client_address import canonical, client_address, client_ip

PROXIES = ("10.0.0.0/8", "::1/128")


def request(peer: str, forwarded: str | None = None) -> falcon.Request:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return falcon.testing.create_req(remote_addr=peer, headers=headers)


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("192.0.2.1", None, (), "192.0.2.1"),
    ("192.0.2.1", "203.0.113.5", (), "192.0.2.1"),  # no trusted proxies: the header is ignored
    ("192.0.2.1", "203.0.113.5", PROXIES, "192.0.2.1"),  # the peer is not a trusted proxy
    ("10.1.2.3", "203.0.113.5", PROXIES, "203.0.113.5"),
    ("10.1.2.3", "198.51.100.9, 203.0.113.5", PROXIES, "203.0.113.5"),  # the left entry is the client's word
    ("10.1.2.3", "203.0.113.5, 10.9.9.9", PROXIES, "203.0.113.5"),  # through two proxies of ours
    ("10.1.2.3", None, PROXIES, "10.1.2.3"),  # a proxy's own request
    ("10.1.2.3", "not-an-address", PROXIES, "10.1.2.3"),
    ("10.1.2.3", "2001:db8:1:2:3:4:5:6", PROXIES, "2001:db8:1:2::/64"),
    ("2001:db8:aa:bb:1:2:3:4", None, (), "2001:db8:aa:bb::/64"),  # one subscriber's /64 (RFC 6177)
    ("::1", "192.0.2.77", PROXIES, "192.0.2.77"),
], ids=["socket", "header-untrusted-setting", "peer-not-trusted", "via-proxy", "spoofed-left-entry",
        "two-proxies", "proxy-itself", "garbage-header", "ipv6-client", "ipv6-peer", "ipv6-proxy"])
def test_the_address_counted(peer, forwarded, trusted, expected):
    assert client_address(request(peer, forwarded), trusted) == expected


def test_canonical_addresses_are_short_and_unique_per_client():
    assert canonical("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical("2001:0db8:0000:0000:0000:0000:0000:0001") == canonical("2001:db8::2")
    assert canonical("x" * 10_000) is None


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("192.0.2.1", "203.0.113.5", (), "192.0.2.1"),
    ("192.0.2.1", "203.0.113.5", PROXIES, "192.0.2.1"),
    ("10.1.2.3", "198.51.100.9, 203.0.113.5, 10.9.9.9", PROXIES, "203.0.113.5"),
    ("10.1.2.3", "2001:db8:1:2:3:4:5:6", PROXIES, "2001:db8:1:2:3:4:5:6"),
    ("::ffff:192.0.2.1", None, (), "192.0.2.1"),
    ("10.1.2.3", "not-an-address", PROXIES, "10.1.2.3"),
    ("", None, (), "-"),
    ("10.1.2.3", "2001:db8::1%<img src=x onerror=alert(1)>", PROXIES, "2001:db8::1"),
], ids=["socket", "peer-not-trusted", "via-proxies", "ipv6-whole", "ipv4-mapped", "garbage-header",
        "no-peer", "zone-id-dropped"])
def test_the_address_a_session_records(peer, forwarded, trusted, expected):
    """The account page shows the client's whole address, with the same proxy trust as the limits."""
    assert client_ip(request(peer, forwarded), trusted) == expected
