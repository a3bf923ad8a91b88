"""Impact analysis (``policy-sso diff OLD NEW``): which decisions change between two tenants.

Both tenants decide the same matrix: every client registered in either, a
set of representative sessions (each with and without consent for the
client, and, where a policy gives consent a lifetime, with consent granted
exactly that long ago and one second longer), sessions at the edges of the
client's time limits, plus any recorded sessions, and requests built from
what the policies test, restricted to the scopes each client may request
(another request is refused before any policy sees it). A case whose outcome
or reason codes differ is a change; a client registered in only one of the
two is ``unregistered`` in the other.

The time limits are every duration either tenant compares the client's
sessions' times with: the idle window (the policy's ``inactivity``, else
tenant.yaml's ``session.inactivity``), ``max_auth_age``, each ``require mfa
within D`` (``when`` blocks too), and tenant.yaml's ``session.lifetime`` and
``session.require_login_after``. Each check fails when ``now - time > D``, so
for each distinct D the client is asked with a pwd+otp session (consent
granted) exactly D old on that clock and one second older, fresh otherwise:
a limit tightened or loosened flips the probe between the old and the new
value, whichever way it moved.

A client whose policy (in either tenant) tests ``when network in`` is asked
each request from an unknown address and from each address of a set: the
``--ips`` given, else the edges of every network its policies name (each
network's first address and the one just past its last), so a widened or
narrowed network shows which addresses flip."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from policy_sso import networks
from policy_sso.checks import human_duration
from policy_sso.decision import Decision
from policy_sso.diagnostics import did_you_mean
from policy_sso.errors import OAuthError
from policy_sso.model import Condition, ConsentRequirement, MfaRequirement, Not, Test
from policy_sso.networks import IPAddress
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import session_from_fixture
from policy_sso.tenant import Tenant

SUBJECT = "diff-user"
UNREGISTERED = "unregistered"  # the verdict of a tenant that does not register the client


def _events(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"method": method, "at": at} for method, at in pairs]


# Sessions that pass and fail the usual requirements; times count back from the evaluation time.
REPRESENTATIVE_SESSIONS: dict[str, dict[str, Any] | None] = {
    "no session": None,
    "pwd": {"events": _events(("pwd", "-1h")), "last_seen": "-1m"},
    "pwd+otp fresh": {"events": _events(("pwd", "-1h"), ("otp", "-1m")), "last_seen": "-1m"},
    "pwd+otp stale otp": {"events": _events(("pwd", "-1h"), ("otp", "-1h")), "last_seen": "-1m"},
    "pwd+otp 9h ago": {"events": _events(("pwd", "-9h"), ("otp", "-9h")), "last_seen": "-1m"},
    "pwd+otp idle 20m": {"events": _events(("pwd", "-1h"), ("otp", "-1h")), "last_seen": "-20m"},
    "pwd+otp idle 2d": {"events": _events(("pwd", "-3d"), ("otp", "-3d")), "last_seen": "-2d"},
    "wia": {"events": _events(("wia", "-1h")), "last_seen": "-1m"},
    "hwk+pwd": {"events": _events(("pwd", "-1h"), ("hwk", "-1h")), "last_seen": "-1m"},
}


@dataclass(frozen=True)
class SessionCase:
    """A session of the matrix: a fixture, and whether to grant the client the requested scopes."""

    name: str
    fixture: dict[str, Any] | None
    consent: bool | None = None  # None: the fixture's own consents, as recorded
    consent_age: int | None = None  # with consent: granted this many seconds ago (consent lifetimes)


@dataclass(frozen=True)
class RequestCase:
    """A request of the matrix: its label, parameters and client address (None: unknown)."""

    name: str
    params: tuple[tuple[str, str], ...]
    ip: IPAddress | None = None


@dataclass(frozen=True)
class Verdict:
    """What one tenant answered: outcome, reason codes (sorted) and the deciding policy."""

    outcome: str
    reasons: tuple[str, ...]
    policy: str

    def __str__(self) -> str:
        return self.outcome + (f" [{', '.join(self.reasons)}]" if self.reasons else "")

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as a JSON object."""
        return {"outcome": self.outcome, "reasons": list(self.reasons), "policy": self.policy}


@dataclass(frozen=True)
class Change:
    """A case whose decision differs between the two tenants."""

    client: str
    session: str
    request: str
    old: Verdict
    new: Verdict

    def to_json(self) -> dict[str, Any]:
        """Return the change as a JSON object."""
        return {"client": self.client, "session": self.session, "request": self.request,
                "old": self.old.to_json(), "new": self.new.to_json()}


@dataclass
class DiffResult:
    """Every change found, and how many cases were compared."""

    changes: list[Change]
    evaluated: int
    clients: int

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON object (docs/authoring.md)."""
        return {"evaluated": self.evaluated, "clients_compared": self.clients,
                "changed": len(self.changes),
                "clients": sorted({c.client for c in self.changes}),
                "changes": [c.to_json() for c in self.changes]}


def _tests(cond: Condition) -> Iterator[Test]:
    if isinstance(cond, Test):
        yield cond
    elif isinstance(cond, Not):
        yield from _tests(cond.operand)
    else:
        for operand in cond.operands:  # type: ignore[union-attr]
            yield from _tests(operand)


def _tested(tenants: Iterable[Tenant], kind: str) -> list[str]:
    values: dict[str, None] = {}
    for tenant in tenants:
        for policy in tenant.policies.values():
            for when in policy.whens:
                values.update((t.value, None) for t in _tests(when.condition) if t.kind == kind)
    return sorted(values)


def requestable_scopes(old: Tenant, new: Tenant, client: str) -> frozenset[str]:
    """Return the scopes ``client`` may request in either tenant (clients.yaml ``scopes``)."""
    return frozenset(s for t in (old, new) if client in t.clients for s in t.clients[client].scopes)


def request_matrix(old: Tenant, new: Tenant, client: str | None = None) -> list[RequestCase]:
    """Return the requests: silent openid, each tested scope the client may request, each acr level
    or tested value, max_age=0."""
    base = (("prompt", "none"), ("scope", "openid"))
    requests = [RequestCase("prompt=none scope=openid", base)]
    allowed = requestable_scopes(old, new, client) if client is not None else None
    for scope in _tested((old, new), "scope"):
        if allowed is not None and scope not in allowed:
            continue
        requests.append(RequestCase(f"prompt=none scope=openid {scope}",
                                    (("prompt", "none"), ("scope", f"openid {scope}"))))
    levels = {lvl.id: None for t in (old, new) for lvl in t.settings.acr_levels}
    levels.update((v, None) for v in _tested((old, new), "acr_values"))
    for level in levels:
        requests.append(RequestCase(f"prompt=none scope=openid acr_values={level}",
                                    (*base, ("acr_values", level))))
    requests.append(RequestCase("prompt=none scope=openid max_age=0", (*base, ("max_age", "0"))))
    return requests


def _network_tests(tenant: Tenant, client: str) -> list[Test]:
    if not tenant.governs(client):
        return []
    return [t for w in tenant.policy_for(client).whens for t in _tests(w.condition) if t.kind == "network"]


def network_probes(tenants: Iterable[Tenant], client: str) -> list[IPAddress] | None:
    """Return the addresses at the edges of the networks ``client``'s policies test, or None when none do.

    For each network: its first address, and the address just past its last
    (inside, then outside: a changed prefix flips one of them).
    """
    found = False
    probes: dict[IPAddress, None] = {}
    for tenant in tenants:
        for test in _network_tests(tenant, client):
            found = True
            for net in networks.resolve(test.networks, tenant.settings.networks).networks:
                probes[net.network_address] = None
                after = int(net.broadcast_address) + 1
                if after < 2 ** net.max_prefixlen:
                    kind = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
                    probes[kind(after)] = None
    return sorted(probes, key=lambda ip: (ip.version, int(ip))) if found else None


def with_addresses(requests: list[RequestCase], addresses: Iterable[IPAddress]) -> list[RequestCase]:
    """Return each request from an unknown address, then from each of ``addresses``."""
    addresses = list(addresses)
    return [case for request in requests
            for case in (RequestCase(f"{request.name} from unknown address", request.params),
                         *(RequestCase(f"{request.name} from {ip}", request.params, ip) for ip in addresses))]


def session_matrix(recorded: Iterable[tuple[str, dict[str, Any] | None]] = ()) -> list[SessionCase]:
    """Return the representative sessions, each with and without consent, then the recorded ones."""
    cases: list[SessionCase] = []
    for name, events in REPRESENTATIVE_SESSIONS.items():
        if events is None:
            cases.append(SessionCase(name, None))
            continue
        fixture = {"subject": SUBJECT, **events}
        cases += [SessionCase(f"{name} / consent", fixture, True),
                  SessionCase(f"{name} / no consent", fixture, False)]
    cases += [SessionCase(name, fixture) for name, fixture in recorded]
    return cases


def consent_ages(tenants: Iterable[Tenant], client: str) -> list[int]:
    """Return grant ages that probe the client's consent lifetimes: each lifetime, and one second past it."""
    lifetimes = {req.lifetime for tenant in tenants if tenant.governs(client)
                 for req in tenant.policy_for(client).all_requirements()
                 if isinstance(req, ConsentRequirement) and req.lifetime is not None}
    return sorted({age for lifetime in lifetimes for age in (lifetime, lifetime + 1)})


def aged_consent_sessions(ages: Iterable[int]) -> list[SessionCase]:
    """Return the representative sessions with consent granted ``age`` seconds ago, for each age."""
    return [SessionCase(f"{name} / consent granted {human_duration(age)} ago",
                        {"subject": SUBJECT, **events}, True, age)
            for age in ages for name, events in REPRESENTATIVE_SESSIONS.items() if events is not None]


# The session times a limit is counted from (each check: ``now - s.<time> > limit``).
IDLE = "last_seen"  # inactivity (the policy's, else the tenant's)
AUTHENTICATED = "auth_time"  # max_auth_age, session.lifetime, mfa within (the second factor's time)
CREATED = "created_at"  # session.require_login_after
_CLOCK_ORDER = {IDLE: 0, AUTHENTICATED: 1, CREATED: 2}
RECENT = 60  # seconds: "fresh" in a limit probe (the other clocks' age)


def time_limits(tenants: Iterable[Tenant], client: str) -> list[tuple[str, int]]:
    """Return ``(clock, seconds)`` for each time limit the tenants apply to ``client``'s sessions (deduped).

    ``clock`` is the session time the limit counts from: IDLE (the idle window in
    force: the policy's ``inactivity``, else tenant.yaml's), AUTHENTICATED
    (``max_auth_age``, ``session.lifetime``, and ``require mfa within D``, whose
    second factor a probe presents with its sign-in) or CREATED
    (``session.require_login_after``).
    """
    limits: dict[tuple[str, int], None] = {}
    for tenant in tenants:
        if not tenant.governs(client):
            continue
        policy = tenant.policy_for(client)
        lifetime = tenant.settings.lifetime
        limits[(IDLE, policy.session.inactivity or lifetime.inactivity)] = None
        limits[(AUTHENTICATED, lifetime.sliding)] = None
        limits[(CREATED, lifetime.absolute)] = None
        if policy.session.max_auth_age:
            limits[(AUTHENTICATED, policy.session.max_auth_age)] = None
        for req in policy.all_requirements():
            if isinstance(req, MfaRequirement) and req.within is not None:
                limits[(AUTHENTICATED, req.within)] = None
    return sorted(limits, key=lambda limit: (_CLOCK_ORDER[limit[0]], limit[1]))


def _limit_session(clock: str, age: int) -> SessionCase:
    """Return a pwd+otp session, consent granted at its last activity, ``age`` seconds old on ``clock``.

    Every other time is as fresh as the session allows (at most RECENT), so the
    limit on ``clock`` is what decides: idle since its sign-in; signed in
    (both factors) ``age`` ago and seen since; or created ``age`` ago and
    signed in again since.
    """
    recent = min(age, RECENT)
    if clock == IDLE:
        created, signed_in, seen = age, age, age
        name = f"pwd+otp, idle {human_duration(age)} since sign-in"
    elif clock == AUTHENTICATED:
        created, signed_in, seen = age, age, recent
        name = f"pwd+otp {human_duration(age)} ago, seen {human_duration(recent)} ago"
    else:
        created, signed_in, seen = age, recent, recent
        name = f"pwd+otp {human_duration(recent)} ago, created {human_duration(age)} ago"
    fixture = {"subject": SUBJECT, "created": f"-{created}s",
               "events": _events(("pwd", f"-{signed_in}s"), ("otp", f"-{signed_in}s")),
               "last_seen": f"-{seen}s"}
    return SessionCase(f"{name} / consent", fixture, True, seen)


def limit_sessions(limits: Iterable[tuple[str, int]]) -> list[SessionCase]:
    """Return, for each ``(clock, seconds)`` limit, a session exactly that old and one a second older.

    Limits are inclusive (``now - time > limit`` fails), so the first passes
    and the second fails: a limit moved either way flips one of the probes
    of its old or new value. Probes shared by two limits are asked once.
    """
    cases: dict[str, SessionCase] = {}
    for clock, limit in limits:
        for age in (limit, limit + 1):
            case = _limit_session(clock, age)
            cases.setdefault(case.name, case)
    return list(cases.values())


def _required_scopes(tenant: Tenant, client: str) -> set[str]:
    if not tenant.governs(client):
        return set()
    return {s for req in tenant.policy_for(client).all_requirements()
            for s in getattr(req, "scopes", ())}


def _verdict(tenant: Tenant, client: str, session_case: SessionCase, request: RequestCase,
             scopes: set[str], *, at: int) -> Verdict:
    if not tenant.governs(client):
        return Verdict(UNREGISTERED, (), "")
    params = dict(request.params)
    fixture = session_case.fixture
    if fixture is not None and session_case.consent is not None:
        granted = sorted(scopes | set(params["scope"].split())) if session_case.consent else []
        if session_case.consent_age is not None:  # when each was granted (require consent … for D)
            # an offset, as the limit probes' times: an epoch second is bounded (fixture.MAX_EPOCH),
            # and ``for 10000000d``, which validate accepts, reaches back beyond it
            granted_at = f"-{session_case.consent_age}s"
            fixture = {**fixture, "consents": {client: dict.fromkeys(granted, granted_at)}}
        else:
            fixture = {**fixture, "consents": {client: granted}}
    try:
        req = AuthRequest.from_params(client, params, client_ip=request.ip)
    except OAuthError as err:  # pragma: no cover - the matrix's requests are well-formed
        return Verdict(err.error, (), "")
    decision: Decision = tenant.decide(req, session_from_fixture(fixture, at), at)
    return Verdict(decision.outcome, tuple(sorted(decision.codes)), decision.policy)


def diff_tenants(old: Tenant, new: Tenant, at: int,
                 recorded: Iterable[tuple[str, dict[str, Any] | None]] = (),
                 ips: Iterable[IPAddress] | None = None) -> DiffResult:
    """Return every case of the matrix whose outcome or reason codes differ between OLD and NEW.

    Recorded fixtures are validated by the caller (``session_from_fixture`` raises FixtureError).
    ``ips``: the client addresses to ask from where a policy tests the network
    (default: the edges of the networks it names).
    """
    ips = list(ips) if ips is not None else None
    clients = sorted(set(old.clients) | set(new.clients))
    sessions = session_matrix(recorded)
    changes: list[Change] = []
    evaluated = 0
    for client in clients:
        scopes = _required_scopes(old, client) | _required_scopes(new, client)
        requests = request_matrix(old, new, client)
        probes = network_probes((old, new), client)
        if probes is not None:
            requests = with_addresses(requests, ips if ips is not None else probes)
        client_sessions = (sessions + aged_consent_sessions(consent_ages((old, new), client))
                           + limit_sessions(time_limits((old, new), client)))
        evaluated += len(client_sessions) * len(requests)
        for session_case in client_sessions:
            for request in requests:
                before = _verdict(old, client, session_case, request, scopes, at=at)
                after = _verdict(new, client, session_case, request, scopes, at=at)
                if (before.outcome, before.reasons) != (after.outcome, after.reasons):
                    changes.append(Change(client, session_case.name, request.name, before, after))
    return DiffResult(changes, evaluated, len(clients))


def unknown_session_clients(fixture: Any, old: Tenant, new: Tenant) -> list[tuple[str, str]]:
    """Return ``(client_id, hint)`` for each client a recorded session names that neither tenant registers."""
    if not isinstance(fixture, dict):
        return []
    named = [*(fixture.get("consents") or {}), *(fixture.get("clients") or [])]
    registered = set(old.clients) | set(new.clients)
    out: list[tuple[str, str]] = []
    for client in dict.fromkeys(str(c) for c in named):
        if client not in registered:
            out.append((client, did_you_mean(client, registered)))
    return out


def render_table(result: DiffResult) -> str:
    """Return the changes as an aligned text table with a summary line."""
    rows = [("CLIENT", "SESSION", "REQUEST", "OLD", "NEW")]
    rows += [(c.client, c.session, c.request, str(c.old), str(c.new)) for c in result.changes]
    lines = []
    if result.changes:
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
                 for row in rows]
    clients = sorted({c.client for c in result.changes})
    summary = (f"{len(result.changes)} of {result.evaluated} decisions changed"
               + (f" for {len(clients)} client{'s' * (len(clients) != 1)}: {', '.join(clients)}"
                  if clients else f" ({result.clients} clients compared)"))
    return "\n".join([*lines, summary]) + "\n"
