"""Model -> evaluator: each policy becomes one generated Python function.

The checks of a policy (:mod:`policy_sso.checks`) are spliced into a single
straight-line function, compiled once with :func:`compile`: a decision runs
only attribute reads and set/integer comparisons, no parsing and no walking
of a tree. Constants (method sets, functions) are bound by name in the
function's globals, never written into the source, so nothing from a policy
file is ever evaluated as code. When checks fail, the reasons and remedy are
built from the same check table.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policy_sso import checks as C  # noqa: N812 - read as C.amr(...), C.consent(...): the check table
from policy_sso import networks
from policy_sso.config import AcrLevel, Client, TenantSettings
from policy_sso.decision import (
    ALLOW,
    LOGIN_REQUIRED,
    OUTCOME_RANK,
    Decision,
    Reason,
    Remedy,
)
from policy_sso.model import (
    AmrRequirement,
    And,
    Condition,
    MfaRequirement,
    Not,
    Or,
    Policy,
    Requirement,
    Span,
    Test,
    When,
)
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import Session, SessionEnd

_TEST_SOURCE = {
    "scope": "{0} in r.scopes", "acr_values": "{0} in r.acr_values", "prompt": "{0} in r.prompt",
    "client": "r.client_id == {0}", "session_amr": "{0} in m",
}


@dataclass(frozen=True)
class Guarded:
    """A check with the ``when`` condition (if any) under which it applies."""

    check: C.Check
    when: Condition | None = None
    when_span: Span | None = None


@dataclass
class CompiledPolicy:
    """A policy ready to decide: the generated function and the table it came from."""

    policy: Policy
    checks: tuple[Guarded, ...]
    decide: Callable[[AuthRequest, Session | None, int], Decision]
    source: str = field(repr=False)
    acr_of: Callable[[Session], str | None] = field(repr=False)
    acr_rank: Callable[[Session], int] = field(repr=False, default=lambda s: -1)
    ended: Callable[[SessionEnd], Decision] = field(repr=False, default=lambda end: Decision(LOGIN_REQUIRED))


# --- acr levels -------------------------------------------------------------

def level_template(requires: tuple[Requirement, ...], consts: list[Any]) -> str:
    """Return an expression (``{i}`` placeholders into ``consts``) true when a session meets a level."""
    tests: list[str] = []
    for req in requires:
        if isinstance(req, AmrRequirement):
            if req.mode == "any_of":
                consts.append(frozenset(req.methods))
                tests.append(f"not {{{len(consts) - 1}}}.isdisjoint(m)")
            else:
                for method in req.methods:
                    consts.append(method)
                    tests.append(f"{{{len(consts) - 1}}} in m")
        elif isinstance(req, MfaRequirement):
            tests.append("s.mfa")
    return "(" + (" and ".join(tests) or "True") + ")"


def reaches_template(levels: tuple[AcrLevel, ...], rank: int) -> tuple[str, tuple[Any, ...]]:
    """Return an expression true when a session reaches level ``rank`` or higher, and its consts."""
    consts: list[Any] = []
    above = [level_template(lvl.requires, consts) for lvl in levels if lvl.rank >= rank]
    return "(" + (" or ".join(above) or "False") + ")", tuple(consts)


def acr_ranker(levels: tuple[AcrLevel, ...]) -> Callable[[Session], int]:
    """Return a generated function giving the highest level rank a session reaches (-1 for none)."""
    ns = _Namespace()
    lines = ["def acr_rank(s):", "    m = s.methods"]
    for level in reversed(levels):
        consts: list[Any] = []
        template = level_template(level.requires, consts)
        lines += [f"    if {template.format(*(ns.bind(c) for c in consts))}:",
                  f"        return {int(level.rank)}"]
    lines.append("    return -1")
    namespace = dict(ns.values)
    exec(compile("\n".join(lines) + "\n", "<acr levels>", "exec"), namespace)  # noqa: S102 - values bound by name
    return namespace["acr_rank"]


# --- code generation ----------------------------------------------------------

class _Namespace:
    """Globals for the generated function: constants bound under fresh names."""

    def __init__(self, networks: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.values: dict[str, Any] = {}
        self._names = (f"k{i}" for i in itertools.count())
        self.networks = networks or {}  # tenant.yaml's named networks
        self._sets: dict[str, networks.NetworkSet] = {}  # a network test's value -> its set

    def bind(self, value: Any) -> str:
        name = next(self._names)
        self.values[name] = value
        return name

    def expression(self, check: C.Check) -> str:
        return check.fails.format(*(self.bind(v) for v in check.consts))

    @property
    def network_tests(self) -> bool:
        """Return whether a condition generated so far tests the client address."""
        return bool(self._sets)

    def network_set(self, test: Test) -> networks.NetworkSet:
        """Return a network test's precomputed set (resolved once per distinct test)."""
        if test.value not in self._sets:
            self._sets[test.value] = networks.resolve(test.networks, self.networks)
        return self._sets[test.value]

    def condition(self, cond: Condition, possibly: bool = True) -> str:
        """Return the expression of a ``when`` guard.

        An unknown client address (``r.client_ip is None``) leaves a network
        test undecided; the guard is then true when it *could* hold
        (``possibly``: the test counts as true under an even number of
        ``not``, as false under an odd one), so a block that tests the network
        applies whichever way it tests it: unknown fails closed. With a known
        address both readings are the plain membership test.
        """
        if isinstance(cond, Test):
            if cond.kind == "network":  # n: the request's client_key, bound once by decide()
                test = self.network_set(cond).expression("n", self.bind)
                return f"(n is None or {test})" if possibly else f"(n is not None and {test})"
            return _TEST_SOURCE[cond.kind].format(self.bind(cond.value))
        if isinstance(cond, Not):
            return f"not ({self.condition(cond.operand, not possibly)})"
        joiner = " and " if isinstance(cond, And) else " or "
        assert isinstance(cond, And | Or)
        return "(" + joiner.join(self.condition(c, possibly) for c in cond.operands) + ")"


def compile_guard(cond: Condition, named: Mapping[str, tuple[str, ...]] | None = None,
                  ) -> Callable[[AuthRequest, Session], bool]:
    """Return a function true when a ``when`` guard holds, generated exactly as ``decide`` generates it.

    For tools that ask which blocks a request enters (``policy-sso test``'s
    coverage), so they agree with the evaluator by construction.
    """
    ns = _Namespace(named)
    source = (f"def holds(r, s):\n    m = s.methods\n    n = r.client_key\n"
              f"    return bool({ns.condition(cond)})\n")
    namespace: dict[str, Any] = dict(ns.values)
    exec(compile(source, "<when guard>", "exec"), namespace)  # noqa: S102 - values bound by name, as decide's
    return namespace["holds"]


def _generate(groups: list[tuple[Condition | None, list[int]]], table: list[Guarded],
              ns: _Namespace) -> str:
    lines = ["def decide(r, s, now):", "    if s is None:", "        return NO_SESSION",
             "    m = s.methods", "    g = s.consents.get(r.client_id, EMPTY)", "    f = None"]
    for cond, indices in groups:
        indent = "    "
        if cond is not None:
            lines.append(f"    if {ns.condition(cond)}:")
            indent = "        "
        for i in indices:
            lines += [f"{indent}if {ns.expression(table[i].check)}:",
                      f"{indent}    if f is None: f = [{i}]",
                      f"{indent}    else: f.append({i})"]
    lines += ["    if f is None:", "        return ALLOWED", "    return deny(f, r, s, now)"]
    if ns.network_tests:  # the client address, read once for every network test
        lines.insert(4, "    n = r.client_key")
    return "\n".join(lines) + "\n"


# --- remedies -------------------------------------------------------------------

_REMEDY_TEXT = {
    "login": "Retry without prompt=none so the user signs in again",
    "switch_user": ("The session belongs to another user: retry without prompt=none and "
                    "without the mismatching hint, or end the session first"),
    "step_up": "Retry without prompt=none so the user completes a stronger authentication",
    "consent": "Retry without prompt=none so the user can grant the scopes",
}


def _remedy(failed: list[C.Check], outcome: str) -> Remedy:
    ordered = sorted(failed, key=lambda c: OUTCOME_RANK.get(c.error, 3))
    lead = next(c for c in ordered if c.error == outcome).remedy
    params: dict[str, str] = {}
    methods: list[str] = []
    scopes: list[str] = []
    for check in ordered:
        for key, value in check.remedy.params:
            if key == "prompt" and "prompt" in params and value not in params["prompt"].split():
                params["prompt"] += f" {value}"
            else:
                params.setdefault(key, value)
        methods += [m for m in check.remedy.methods if m not in methods]
        scopes += [s for s in check.remedy.scopes if s not in scopes]
    message = _REMEDY_TEXT[lead.action]
    if params:
        message += " (with " + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    if methods:
        message += "; methods that satisfy the policy: " + ", ".join(methods)
    return Remedy(lead.action, message, params, tuple(methods), tuple(scopes))


# --- the compiler ---------------------------------------------------------------

def compile_policy(policy: Policy, tenant: TenantSettings, client: Client | None = None, *,
                   applies: Callable[[C.Check], bool] | None = None) -> CompiledPolicy:
    """Return the evaluator for ``policy`` under ``tenant`` (and the client's registration).

    ``applies`` keeps only the checks it accepts: the evaluator of an access
    token's authentication context (:mod:`policy_sso.oidc.step_up`) is the same
    table without the checks that only a live session or a request can fail.
    """
    on_unmet = policy.on_unmet
    levels = tenant.acr_levels
    acr_rank = acr_ranker(levels)
    rank_by_id = {lvl.id: lvl.rank for lvl in levels}

    def acr_name(rank: int) -> str:
        return levels[rank].id if 0 <= rank < len(levels) else "none"

    def rank_of(level: str) -> int:
        return rank_by_id.get(level, len(levels))  # an undefined level is never reached

    def essential_unmet(r: AuthRequest, s: Session) -> bool:
        return acr_rank(s) < min(rank_of(v) for v in r.essential_acr)

    def requested_unmet(r: AuthRequest, s: Session) -> bool:
        # values the tenant does not define are left out (OIDC Core §3.1.2.1: the OP may
        # satisfy acr_values with any level it supports); none known, nothing to enforce
        if r.step_up_acr is not None:
            return acr_rank(s) < rank_of(r.step_up_acr)
        known = [rank_by_id[v] for v in r.acr_values if v in rank_by_id]
        return bool(known) and acr_rank(s) < min(known)

    mfa_level = next((lvl.id for lvl in levels
                      if any(isinstance(q, MfaRequirement) for q in lvl.requires)), None)
    step_up_hint = C.RemedyHint("step_up", (("acr_values", mfa_level),) if mfa_level else (),
                                C.second_factor_methods(tenant.methods))

    table = _session_checks(policy, tenant)

    def requirement(req: Requirement) -> list[C.Check]:
        return C.requirement_checks(req, error=on_unmet, step_up_hint=step_up_hint,
                                    acr_rank=acr_rank, acr_name=acr_name,
                                    reaches=lambda level: reaches_template(levels, rank_of(level)))

    for req in policy.requirements:
        table += [Guarded(c) for c in requirement(req)]
    table.append(Guarded(C.essential_acr(policy.span, essential_unmet, acr_rank, acr_name, on_unmet)))
    if tenant.acr_values_requested == "enforced":
        table.append(Guarded(C.requested_acr(policy.span, requested_unmet, acr_rank, acr_name, on_unmet,
                                             hint=step_up_hint)))
    if client is None or not client.first_party:
        table.append(Guarded(C.consent((), policy.span, requested=True)))
    table.append(Guarded(C.prompt_consent(policy.span)))
    unconditional = {(g.check.reason, g.check.fails, g.check.consts) for g in table}
    for when in policy.whens:
        # a check the policy already applies unconditionally adds nothing under a guard
        table += [Guarded(_network_note(c, when, tenant.networks), when.condition, when.span)
                  for req in when.requirements for c in requirement(req)
                  if (c.reason, c.fails, c.consts) not in unconditional]

    table = [g for g in table if applies is None or applies(g.check)]
    ns = _Namespace(tenant.networks)
    source = _generate(_grouped(table), table, ns)
    checks_by_index = [g.check for g in table]
    name = policy.name

    verdicts: dict[tuple[int, ...], tuple[str, Remedy, tuple[int, ...]]] = {}

    def verdict(indices: tuple[int, ...]) -> tuple[str, Remedy, tuple[int, ...]]:
        """Return the outcome, remedy and reported checks of a set of failed checks (memoized).

        A reason code is reported once, at its first failing check: a policy's
        ``require consent`` and the implicit check of the requested scopes both
        fail as consent_missing, and error_description must not say it twice.
        """
        failed = [checks_by_index[i] for i in indices]
        outcome = min((c.error for c in failed), key=lambda e: OUTCOME_RANK.get(e, 3))
        first: dict[str, int] = {}
        for i in indices:
            first.setdefault(checks_by_index[i].reason, i)
        return verdicts.setdefault(indices, (outcome, _remedy(failed, outcome), tuple(first.values())))

    def deny(indices: list[int], r: AuthRequest, s: Session, now: int) -> Decision:
        key = tuple(indices)
        outcome, remedy, reported = verdicts.get(key) or verdict(key)
        reasons = tuple([Reason(c.reason, c.required, (c.observe, r, s, now), c.source, c.description)
                         for c in map(checks_by_index.__getitem__, reported)])
        return Decision(outcome, reasons, remedy, name)

    no_session = Decision(
        LOGIN_REQUIRED,
        (Reason("no_session", "a live session", "no session", str(policy.span),
                "there is no live session for this user-agent or session id"),),
        Remedy("login", _REMEDY_TEXT["login"], {}),
        name,
    )
    namespace = {**ns.values, "EMPTY": C.EMPTY, "NO_SESSION": no_session,
                 "ALLOWED": Decision(ALLOW, (), None, name),
                 "deny": deny}
    code = compile(source, f"<policy {name}>", "exec")
    exec(code, namespace)  # noqa: S102 - source is generated from the check table; values are bound, not spliced

    def acr_of(s: Session) -> str | None:
        rank = acr_rank(s)
        return levels[rank].id if rank >= 0 else None

    return CompiledPolicy(policy, tuple(table), namespace["decide"], source, acr_of, acr_rank,
                          _ended(policy, tenant))


def network_tests(cond: Condition) -> list[tuple[Test, bool]]:
    """Return the ``network in`` tests of a condition, each with whether it sits under a ``not``."""
    if isinstance(cond, Test):
        return [(cond, False)] if cond.kind == "network" else []
    if isinstance(cond, Not):
        return [(t, not negated) for t, negated in network_tests(cond.operand)]
    return [pair for c in cond.operands for pair in network_tests(c)]


def _network_note(check: C.Check, when: When, named: Mapping[str, tuple[str, ...]]) -> C.Check:
    """Return ``check`` whose observation also says where the client address is, for a network block.

    The reason's source already points into the ``when`` block; the client
    address is the fact that turned the block on, so it is said with what
    the session has.
    """
    tests = list(dict.fromkeys(t for t, _ in network_tests(when.condition)))
    if not tests:
        return check
    observe = check.observe
    sets = [(networks.describe(t.networks), networks.resolve(t.networks, named)) for t in tests]

    def observed(r: AuthRequest, s: Session, now: int) -> str:
        base = observe(r, s, now)
        ip = r.client_ip
        if ip is None:
            return f"{base}; client address unknown, so the network block at {when.span} applies"
        where = "; ".join(f"{'in' if ip in net else 'not in'} {text}" for text, net in sets)
        return f"{base}; client address {ip} {where} (the network block at {when.span})"

    return dataclasses.replace(check, observe=observed)


def _grouped(table: list[Guarded]) -> list[tuple[Condition | None, list[int]]]:
    """Return the table's indices in runs that share one ``when`` guard (one ``if`` a run)."""
    groups: list[tuple[Condition | None, list[int]]] = []
    for i, guarded in enumerate(table):
        if groups and groups[-1][0] is guarded.when and guarded.when is not None:
            groups[-1][1].append(i)
        else:
            groups.append((guarded.when, [i]))
    return groups


def _session_checks(policy: Policy, tenant: TenantSettings) -> list[Guarded]:
    """Return the checks that the session is valid for this request (each failing login_required)."""
    span = tenant.span
    table: list[Guarded] = []
    if not tenant.sso_active:
        table.append(Guarded(C.sso_disabled(span("sso.active"))))
    table += [
        Guarded(C.sliding_lifetime(tenant.lifetime.sliding, span("session.lifetime"))),
        Guarded(C.absolute_lifetime(tenant.lifetime.absolute, span("session.require_login_after"))),
        Guarded(C.inactivity(policy.session.inactivity or tenant.lifetime.inactivity,
                             policy.session.inactivity_span if policy.session.inactivity
                             else span("session.inactivity"))),
        Guarded(C.request_max_age(policy.span)),
    ]
    if policy.session.max_auth_age:
        table.append(Guarded(C.max_auth_age(policy.session.max_auth_age,
                                            policy.session.max_auth_age_span)))
    return [*table, Guarded(C.prompt_login(policy.span)), Guarded(C.subject_mismatch(policy.span))]


def _ended(policy: Policy, tenant: TenantSettings) -> Callable[[SessionEnd], Decision]:
    """Return the refusal for a session the store says has ended, with why (SPEC §2)."""
    def ended(end: SessionEnd) -> Decision:
        return Decision(LOGIN_REQUIRED, (C.ended_reason(end, tenant.span, policy.span),),
                        Remedy("login", _REMEDY_TEXT["login"], {}), policy.name)

    return ended
