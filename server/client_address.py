"""The client address a request is counted against (rate limits and the guessing throttle),
and the one a session records for its user to read (:func:`client_ip`).

The socket's peer address, as waitress reports it in ``REMOTE_ADDR``, unless
that peer is one of the tenant's ``trusted_proxies``: then the address is the
right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (the
first hop the trusted chain vouches for; entries further left were written by
the client and prove nothing). Nothing else, no ``Forwarded`` or
``X-Real-IP``, is read. An IPv6 address counts as its /64, the block one
subscriber is given (RFC 6177), so a host cannot take a fresh address per
request. The result is short and canonical: limiter keys stay bounded.
"""

from __future__ import annotations

import functools
import ipaddress

import falcon

from policy_sso.networks import IPAddress
from policy_sso.networks import client_ip as parse_client_ip
from policy_sso.sessions.device import device_of
from policy_sso.sessions.model import Device

MAX_FORWARDED_HOPS = 16  # X-Forwarded-For entries examined from the right; a longer chain is not real

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)  # keyed by the tenant's own setting: a handful of values per process
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:  # refused by `validate` (E_TRUSTED_PROXY); never trusted here
            continue
    return tuple(out)


def canonical(address: str) -> str | None:
    """Return the address as counted (IPv4 dotted quad, IPv6 its /64), or None when not an address."""
    ip = parse_client_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip) if ip is not None else None


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _vouched(req: falcon.Request, networks: tuple[Network, ...]) -> str:
    """Return the right-most X-Forwarded-For entry that is not a trusted proxy (raw text)."""
    forwarded = req.get_header("X-Forwarded-For") or ""
    hops = [hop for hop in forwarded.split(",")[-MAX_FORWARDED_HOPS:] if hop.strip()]
    client = req.env.get("REMOTE_ADDR") or "-"
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, networks):  # another proxy of ours: keep walking left
            break
    return client


def client_address(req: falcon.Request, trusted_proxies: tuple[str, ...] = ()) -> str:
    """Return the address to count this request against (see the module docstring)."""
    peer = req.env.get("REMOTE_ADDR") or "-"
    if not trusted_proxies:
        return peer if ":" not in peer else (canonical(peer) or peer)  # the common case: no parsing
    networks = _networks(trusted_proxies)
    if not _trusted(peer, networks):
        return canonical(peer) or peer
    return canonical(_vouched(req, networks)) or canonical(peer) or peer


def _plain(address: str) -> str | None:
    ip = parse_client_ip(address)
    return str(ip) if ip is not None else None


def client_ip(req: falcon.Request, trusted_proxies: tuple[str, ...] = ()) -> str:
    """Return the client's own address for people to read (a whole IPv6 address, not its /64), or "-".

    The same trust as :func:`client_address`: X-Forwarded-For is read only when
    the peer is a trusted proxy. What the account page shows for a session.
    """
    peer = req.env.get("REMOTE_ADDR") or "-"
    networks = _networks(trusted_proxies)
    client = _vouched(req, networks) if trusted_proxies and _trusted(peer, networks) else peer
    return _plain(client) or _plain(peer) or "-"


def client_device(req: falcon.Request, trusted_proxies: tuple[str, ...] = ()) -> Device:
    """Return where this request comes from as a session records it: address and browser label."""
    return device_of(client_ip(req, trusted_proxies), req.get_header("User-Agent"))


def is_trusted_proxy(req: falcon.Request, trusted_proxies: tuple[str, ...] = ()) -> bool:
    """Return whether the request's peer is one of the trusted proxies (its forwarded addresses count)."""
    return bool(trusted_proxies) and _trusted(req.env.get("REMOTE_ADDR") or "", _networks(trusted_proxies))


def policy_client_ip(req: falcon.Request, trusted_proxies: tuple[str, ...] = ()) -> IPAddress | None:
    """Return the address ``when network in`` tests, parsed once, or None when it is not known.

    The same trust as :func:`client_address`, with no fallback to the proxy:
    a trusted proxy that forwards no address, or something that is not one,
    leaves the client unknown (every network-testing block then applies)
    rather than placing it on the proxy's own, likely internal, network.
    """
    peer = req.env.get("REMOTE_ADDR") or ""
    if not trusted_proxies:
        return parse_client_ip(peer)
    networks = _networks(trusted_proxies)
    if not _trusted(peer, networks):
        return parse_client_ip(peer)
    if not (req.get_header("X-Forwarded-For") or "").strip(", \t"):
        return None
    return parse_client_ip(_vouched(req, networks))
