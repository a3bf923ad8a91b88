"""Client networks: the address a request comes from, and the network sets ``when network in`` tests.

A policy names networks as CIDRs (``"10.0.0.0/8"``, ``"2001:db8::/32"``, a
bare address meaning a single host) or by a name from ``tenant.yaml``'s
``networks:``. Each test's networks are resolved and precomputed once, when
the policy is compiled, into a :class:`NetworkSet`: a decision then costs an
integer shift and a set lookup per distinct prefix length, never a parse.

The client address is parsed once per request (:func:`client_ip`), at the
edge where the server learns it (``server/client_address.py``: the socket's
peer, or the hop trusted proxies vouch for). An address that is not known
(``None``) is neither inside nor outside any network: :mod:`policy_sso.compile`
then applies every ``when`` block whose guard could hold, so a block that
tests the network applies whichever way it tests it (fail closed).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A network's name in tenant.yaml (and bare in the DSL); a CIDR never matches it
# (IPv4 starts with a digit, IPv6 holds a ':').
NETWORK_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def is_network_name(text: str) -> bool:
    """Return whether ``text`` is written as a network name rather than an address or CIDR."""
    return NETWORK_NAME_RE.fullmatch(text) is not None


def client_ip(text: str | None) -> IPAddress | None:
    """Return the address in ``text`` (an IPv4-mapped IPv6 address as IPv4), or None when it is not one."""
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # RFC 4291 §2.5.5.2: an IPv4 client on a dual-stack socket
            return ip.ipv4_mapped
        if ip.scope_id is not None:  # fe80::1%eth0: the zone names a link, not another host
            return ipaddress.IPv6Address(int(ip))
    return ip


def parse_network(text: str) -> Network:
    """Return the network a CIDR (or a bare address: one host) denotes; raise ValueError.

    Host bits must be zero (``10.1.0.0/8`` is refused): a policy author who
    wrote it most likely meant another prefix, and the policy must say what it means.
    """
    return ipaddress.ip_network(text.strip(), strict=True)


def network_problem(text: str) -> tuple[str, str] | None:
    """Return the message and hint for a CIDR that does not parse, or None when it is valid."""
    try:
        parse_network(text)
        return None
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return (f"{text!r} is not an IP address or CIDR",
                "write an address with its prefix length, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"")
    return (f"{text!r} has host bits set: the prefix /{loose.prefixlen} starts at {loose.network_address}",
            f"write \"{loose}\", or a longer prefix for a smaller network")


# IPv4 addresses are keyed inside IPv6's IPv4-mapped block (RFC 4291 §2.5.5.2, ::ffff:0:0/96), so
# one integer compares against networks of either version.
_MAPPED = 0xFFFF << 32


def address_key(ip: IPAddress) -> int:
    """Return the address as one 128-bit integer (an IPv4 address as its IPv4-mapped IPv6 form)."""
    return int(ip) | _MAPPED if ip.version == 4 else int(ip)


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """A precomputed union of networks: membership is a shift and a set lookup per prefix length.

    Keys are :func:`address_key` values. An IPv6 network that covers the
    IPv4-mapped block (``::/0`` to ``::/80``, ``::ffff:0:0/96``) therefore also
    holds IPv4 clients, which is what a network that wide means.
    """

    networks: tuple[Network, ...]
    groups: tuple[tuple[int, frozenset[int]], ...]  # (shift, prefixes) per distinct prefix length

    @classmethod
    def of(cls, networks: Iterable[Network]) -> NetworkSet:
        """Return the set of ``networks``."""
        nets = tuple(dict.fromkeys(networks))
        groups: dict[int, set[int]] = {}
        for net in nets:
            shift = net.max_prefixlen - net.prefixlen
            groups.setdefault(shift, set()).add(address_key(net.network_address) >> shift)
        return cls(nets, tuple(sorted((shift, frozenset(p)) for shift, p in groups.items())))

    def __contains__(self, ip: object) -> bool:
        """Return whether ``ip`` (an address, or None: unknown) is in one of the networks."""
        if ip is None:
            return False
        key = address_key(ip)  # type: ignore[arg-type]
        for shift, prefixes in self.groups:  # noqa: SIM110 - a loop: any() over a generator costs twice as much
            if key >> shift in prefixes:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.networks)

    def expression(self, key: str, bind: Callable[[object], str]) -> str:
        """Return a Python expression true when the integer variable ``key`` is in the set (never None)."""
        tests = [f"{key} >> {shift} in {bind(prefixes)}" if shift else f"{key} in {bind(prefixes)}"
                 for shift, prefixes in self.groups]
        return "(" + (" or ".join(tests) or "False") + ")"


def resolve(entries: Iterable[str], named: Mapping[str, tuple[str, ...]]) -> NetworkSet:
    """Return the set the entries of one test name (CIDRs, and names from tenant.yaml).

    Entries ``validate`` refuses (a bad CIDR, an unknown name) contribute no
    network: a tenant with them never loads, so this only matters to tools
    that evaluate a policy that does not validate.
    """
    nets: list[Network] = []
    for entry in entries:
        for cidr in (named.get(entry, ()) if is_network_name(entry) else (entry,)):
            try:
                nets.append(parse_network(cidr))
            except ValueError:
                continue
    return NetworkSet.of(nets)


def describe(entries: Iterable[str]) -> str:
    """Return a test's networks as a policy writes them (names bare, CIDRs quoted)."""
    return ", ".join(e if is_network_name(e) else f'"{e}"' for e in entries)
