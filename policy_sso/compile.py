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
from policy_sso.sessions.model import AuthEvent, Session, SessionEnd

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


def _remedy_of(action: str, params: dict[str, str], methods: tuple[str, ...],
               scopes: tuple[str, ...]) -> Remedy:
    message = _REMEDY_TEXT[action]
    if params:
        message += " (with " + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    if methods:
        message += "; methods that satisfy the policy: " + ", ".join(methods)
    return Remedy(action, message, params, methods, scopes)


@dataclass(frozen=True)
class _RemedyPlan:
    """What a set of failed checks asks of a retry, before the request and session are known.

    ``asks_acr``: the retry names an ``acr_values`` level; ``levels``: ranks it must reach (a policy's
    ``require acr``, the level that implies an amr or MFA requirement);
    ``essential``: also the request's essential acr; ``solve``: indices of the
    failed checks that presenting methods resolves; ``static``: the remedy
    itself when none of that applies.
    """

    action: str
    params: tuple[tuple[str, str], ...]
    scopes: tuple[str, ...]
    asks_acr: bool = False
    levels: tuple[int, ...] = ()
    essential: bool = False
    solve: tuple[int, ...] = ()
    named: tuple[str, ...] = ()
    static: Remedy | None = None


def _plan(failed: list[tuple[int, C.Check]], outcome: str, rank_of: Callable[[str], int]) -> _RemedyPlan:
    ordered = sorted(failed, key=lambda pair: OUTCOME_RANK.get(pair[1].error, 3))
    lead = next(c for _, c in ordered if c.error == outcome).remedy
    params: dict[str, str] = {}
    scopes: list[str] = []
    levels: list[int] = []
    named: list[str] = []
    essential, solve = False, []
    for i, check in ordered:
        hint = check.remedy
        for key, value in hint.params:
            if key == "prompt" and "prompt" in params and value not in params["prompt"].split():
                params["prompt"] += f" {value}"
            else:
                params.setdefault(key, value)
        scopes += [s for s in hint.scopes if s not in scopes]
        if hint.acr == C.ESSENTIAL_ACR:
            essential = True
        elif hint.acr is not None and hint.acr != C.REQUESTED_ACR:
            levels.append(rank_of(hint.acr))
        if hint.solve:
            solve.append(i)
            named += [m for m in hint.methods if m not in named]
    plan = _RemedyPlan(lead.action, tuple(params.items()), tuple(scopes), "acr_values" in params,
                       tuple(levels), essential, tuple(sorted(solve)), tuple(named))
    if plan.asks_acr or solve:
        return plan
    return dataclasses.replace(plan, static=_remedy_of(lead.action, params, (), plan.scopes))


class _RemedySolver:
    """Finishes a remedy for a request and session: the level to ask for and the methods to present.

    The level is the highest of those the failed checks need and the level
    the request itself asks for (a retry must not drop the app's own
    ``acr_values``), so a remedy followed is never refused again for the same
    reasons. The methods are found by trial, with the evaluator's own
    predicates: the smallest sets of methods that, presented now, make every
    failed amr/MFA/step-up check pass and reach that level; the remedy lists
    every method of those sets (e.g. ``hwk, otp`` when either makes MFA, only
    ``hwk`` when the level needs a hardware key), never one that does not help.
    """

    _MEMO_LIMIT = 4096

    def __init__(self, checks: list[C.Check], tenant: TenantSettings,
                 acr_rank: Callable[[Session], int]) -> None:
        self.checks, self.acr_rank, self.named = checks, acr_rank, tenant.networks
        self.levels = tenant.acr_levels
        self.rank_by_id = {lvl.id: lvl.rank for lvl in self.levels}
        self.enabled = tuple(sorted(tenant.methods))
        self.enforced = tenant.acr_values_requested == "enforced"
        self._predicates: dict[int, Callable[[AuthRequest, Session, int], bool]] = {}
        self._memo: dict[tuple[Any, ...], Remedy] = {}

    def remedy(self, indices: tuple[int, ...], plan: _RemedyPlan, r: AuthRequest, s: Session,
               now: int) -> Remedy:
        """Return the remedy of ``plan`` (the failed checks ``indices``) for this request and session.

        Presented methods are fresh, so the answer depends on the levels the
        request asks for and on which methods the session holds, not when: it
        is memoized on those.
        """
        asks = plan.asks_acr
        requested = self.request_rank(r) if asks else None
        essential = (min((self.rank_by_id.get(v, len(self.levels)) for v in r.essential_acr), default=None)
                     if asks and plan.essential else None)
        key = (indices, requested, essential, s.amr)  # amr: the methods held, sorted, cached by the session
        remedy = self._memo.get(key)
        if remedy is None:
            if len(self._memo) >= self._MEMO_LIMIT:
                self._memo.clear()
            remedy = self._memo[key] = self._finish(plan, (requested, essential), r, s, now)
        return remedy

    def _finish(self, plan: _RemedyPlan, asked: tuple[int | None, int | None], r: AuthRequest,
                s: Session, now: int) -> Remedy:
        """Return the remedy: its level (``asked``: the request's acr_values and essential acr), methods."""
        params = dict(plan.params)
        target = None
        if plan.asks_acr:
            # a level the tenant does not define cannot be asked for (validate reports it)
            target = max((b for b in (*plan.levels, *asked)
                          if b is not None and b < len(self.levels)), default=None)
            if target is None:
                del params["acr_values"]
            else:
                params["acr_values"] = self.levels[target].id
        methods = self.methods(plan, target, r, s, now) if plan.solve or target is not None else ()
        return _remedy_of(plan.action, params, methods, plan.scopes)

    def request_rank(self, r: AuthRequest) -> int | None:
        """Return the level the request's acr_values ask for, as the requested-acr check reads them."""
        if not (self.enforced and (r.acr_values or r.step_up_acr)):
            return None  # none asked, or voluntary: the retry's acr_values need not keep them
        if r.step_up_acr is not None:
            return self.rank_by_id.get(r.step_up_acr, len(self.levels))
        return min((self.rank_by_id[v] for v in r.acr_values if v in self.rank_by_id), default=None)

    def methods(self, plan: _RemedyPlan, target: int | None, r: AuthRequest, s: Session,
                now: int) -> tuple[str, ...]:
        """Return the methods of every smallest set that clears the plan's checks and reaches ``target``."""
        needs = [self._predicate(i) for i in plan.solve]
        level_methods = [m for q in (self.levels[target].requires if target is not None else ())
                         if isinstance(q, AmrRequirement) for m in q.methods]
        candidates = sorted({*self.enabled, *plan.named, *level_methods})

        def clears(methods: tuple[str, ...]) -> bool:
            trial = s
            for method in methods:
                trial = trial.with_event(AuthEvent(method, now), s.id)
            return ((target is None or self.acr_rank(trial) >= target)
                    and not any(fails(r, trial, now) for fails in needs))

        for size in range(1, len(candidates) + 1):
            sets = [combo for combo in itertools.combinations(candidates, size) if clears(combo)]
            if sets:
                return tuple(sorted({m for combo in sets for m in combo}))
        return ()

    def _predicate(self, index: int) -> Callable[[AuthRequest, Session, int], bool]:
        """Return the failing predicate of one check, generated as ``decide`` generates it."""
        if index not in self._predicates:
            ns = _Namespace(self.named)
            check = self.checks[index]
            source = ("def fails(r, s, now):\n    m = s.methods\n    g = s.consents.get(r.client_id, EMPTY)\n"
                      f"    return bool({ns.expression(check)})\n")
            namespace: dict[str, Any] = {**ns.values, "EMPTY": C.EMPTY}
            exec(compile(source, f"<remedy {check.reason}>", "exec"), namespace)  # noqa: S102 - as decide's
            self._predicates[index] = namespace["fails"]
        return self._predicates[index]


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

    table = _session_checks(policy, tenant)

    def requirement(req: Requirement) -> list[C.Check]:
        return C.requirement_checks(req, error=on_unmet, step_up_hint=_step_up_hint(tenant, req),
                                    acr_rank=acr_rank, acr_name=acr_name,
                                    reaches=lambda level: reaches_template(levels, rank_of(level)))

    for req in policy.requirements:
        table += [Guarded(c) for c in requirement(req)]
    table.append(Guarded(C.essential_acr(policy.span, essential_unmet, acr_rank, acr_name, on_unmet)))
    if tenant.acr_values_requested == "enforced":
        table.append(Guarded(C.requested_acr(policy.span, requested_unmet, acr_rank, acr_name, on_unmet)))
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

    solver = _RemedySolver(checks_by_index, tenant, acr_rank)
    verdicts: dict[tuple[int, ...], tuple[str, _RemedyPlan, tuple[int, ...]]] = {}

    def verdict(indices: tuple[int, ...]) -> tuple[str, _RemedyPlan, tuple[int, ...]]:
        """Return the outcome, remedy plan and reported checks of a set of failed checks (memoized).

        A reason code is reported once, at its first failing check: a policy's
        ``require consent`` and the implicit check of the requested scopes both
        fail as consent_missing, and error_description must not say it twice.
        """
        failed = [(i, checks_by_index[i]) for i in indices]
        outcome = min((c.error for _, c in failed), key=lambda e: OUTCOME_RANK.get(e, 3))
        first: dict[str, int] = {}
        for i in indices:
            first.setdefault(checks_by_index[i].reason, i)
        return verdicts.setdefault(indices, (outcome, _plan(failed, outcome, rank_of), tuple(first.values())))

    def deny(indices: list[int], r: AuthRequest, s: Session, now: int) -> Decision:
        key = tuple(indices)
        outcome, plan, reported = verdicts.get(key) or verdict(key)
        remedy = plan.static or solver.remedy(key, plan, r, s, now)
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


def _step_up_hint(tenant: TenantSettings, req: Requirement) -> C.RemedyHint:
    """Return the step-up remedy of an amr or MFA requirement: the lowest level that implies it
    (loa:3 for ``all_of "hwk"``), else the MFA level."""
    levels = tenant.acr_levels
    level = _lowest_level(levels, req) or _lowest_level(levels, MfaRequirement())
    return C.RemedyHint("step_up", (("acr_values", level),) if level else (),
                        C.second_factor_methods(tenant.methods), acr=level, solve=True)


def _lowest_level(levels: tuple[AcrLevel, ...], req: Requirement) -> str | None:
    """Return the lowest acr level whose own requirements imply ``req`` (an amr or MFA one), if any."""
    for level in levels:
        held = {m for q in level.requires if isinstance(q, AmrRequirement)
                and (q.mode == "all_of" or len(q.methods) == 1) for m in q.methods}
        if isinstance(req, MfaRequirement):
            implied = any(isinstance(q, MfaRequirement) for q in level.requires)
        elif isinstance(req, AmrRequirement) and (req.mode == "all_of" or len(req.methods) == 1):
            implied = set(req.methods) <= held
        else:  # any_of several: a level that holds one of them would demand it where another would do
            implied = False
        if implied:
            return level.id
    return None


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
