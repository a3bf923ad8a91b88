"""Static analysis of a tenant's policies (``policy-sso lint``): a table of small rules.

Shaped like :mod:`policy_sso.validate`: each rule is a function yielding
:class:`~policy_sso.diagnostics.Diagnostic` findings (code, severity,
location, fix hint); adding a rule is adding a row to :data:`POLICY_RULES`
or :data:`TENANT_RULES`. Validation says whether a tenant loads; lint says
whether it does what its author meant: requirements nobody can meet,
``when`` blocks that never fire or add nothing, lifetimes that contradict
each other, weak keys.

A finding is silenced by a comment ``# policy-sso: ignore[CODE]`` (or
``ignore[CODE1,CODE2]``) on the finding's line or on the line above it.
Every code is listed in :data:`CODES` and documented in docs/authoring.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from policy_sso import networks
from policy_sso.config import Client, SecretRef, TenantSettings
from policy_sso.diagnostics import Diagnostic, sort_diagnostics
from policy_sso.model import (
    NETWORK_SEPARATOR,
    AcrRequirement,
    AmrRequirement,
    And,
    Condition,
    ConsentRequirement,
    MfaRequirement,
    Not,
    Or,
    Policy,
    Requirement,
    Span,
    Test,
    TrustedIssuer,
    format_duration,
)
from policy_sso.networks import Network, is_network_name
from policy_sso.sessions.model import FACTOR_OF_METHOD
from policy_sso.tenant import Tenant
from policy_sso.validate import HMAC_ALGS, Context, _key_kind, _load_key, _trusted_issuer, load_pem_key

ERROR, WARNING = "error", "warning"

# RFC 7518 §3.2: an HMAC key at least as long as the hash output; §3.3: RSA keys of 2048 bits or more.
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
RSA_MIN_BITS = 2048
# A freshness limit this short demands a new login on (nearly) every request.
FRESH_LOGIN_SECONDS = 60
# Conditions with more distinct tests than this are not searched (2**16 assignments).
MAX_ATOMS = 16

CODES: dict[str, tuple[str, str]] = {
    "L_AMR_UNSATISFIABLE": (ERROR, "require amr names methods no session can hold"),
    "L_MFA_UNSATISFIABLE": (ERROR, "require mfa, but the enabled methods span fewer than two factors"),
    "L_ACR_UNSATISFIABLE": (ERROR, "require acr of a level no session can reach"),
    "L_ACR_VALUES_VOLUNTARY": (WARNING, "a requested acr level is tested but, being voluntary, not required"),
    "L_ACR_VALUES_ENFORCED": (WARNING, "require acr of a requested level the tenant already enforces"),
    "L_WHEN_NEVER": (ERROR, "a when block whose condition can never hold"),
    "L_WHEN_SHADOWED": (WARNING, "a when block whose requirements already apply unconditionally"),
    "L_INACTIVITY_EXCEEDS_LIFETIME": (WARNING, "an idle window longer than the session can live"),
    "L_MAX_AUTH_AGE_BEYOND_LIFETIME": (WARNING, "a policy's max_auth_age no session lives to reach"),
    "L_REFRESH_OUTLIVES_SESSION": (WARNING, "refresh tokens live longer than the session"),
    "L_TRUST_KEY_MISSING": (WARNING, "a trusted issuer's key is not available"),
    "L_WEAK_KEY": (ERROR, "a trusted issuer's key is shorter than its algorithm needs"),
    "L_FRESH_LOGIN_SILENT": (WARNING, "a freshness limit so short that prompt=none can never succeed"),
    "L_CONSENT_OUTLIVES_SESSION": (WARNING, "a consent lifetime longer than the session it is kept on"),
    "L_CONSENT_LIFETIME_SHORT": (WARNING, "a consent lifetime so short that prompt=none nearly always fails"),
    "L_NETWORK_OVERLAP": (WARNING, "a network in a network test already covered by another one of it"),
    "L_NETWORK_EMPTY": (WARNING, "a network test naming a tenant.yaml network that holds no CIDR"),
    "L_NETWORK_NEVER": (ERROR, "a when block no client address can make hold (it applies only when unknown)"),
}


@dataclass
class LintContext:
    """What rules may consult: the tenant (absent for a lone policy file) and its policies."""

    policies: list[Policy]
    settings: TenantSettings | None = None
    clients: dict[str, Client] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def producible(self) -> frozenset[str] | None:
        """Return the methods a session can hold: enabled ones and what trusted issuers vouch for."""
        if self.settings is None:
            return None
        return self.settings.methods | {m for p in self.policies for t in p.trust for m in t.amr}

    def level_rank(self, level: str) -> int | None:
        """Return the rank of an acr level, None when it is not defined (or there is no tenant)."""
        if self.settings is None:
            return None
        found = self.settings.acr_level(level)
        return found.rank if found else None


def _finding(span: Span, code: str, message: str, hint: str = "") -> Diagnostic:
    end_col = getattr(span, "end_col", 0)  # the construct's underline in the text format
    return Diagnostic(span.file, span.line, span.col, code, message, hint, CODES[code][0],
                      span.line if end_col else 0, end_col)


def _factors(methods: Iterable[str]) -> frozenset[str]:
    return frozenset(FACTOR_OF_METHOD.get(m, m) for m in methods)


# --- satisfiability -----------------------------------------------------------------

def _unmet(req: Requirement, ctx: LintContext) -> str | None:
    """Return why no session can meet ``req`` (None when one can, or without a tenant)."""
    producible = ctx.producible
    if producible is None:
        return None
    if isinstance(req, AmrRequirement):
        missing = [m for m in req.methods if m not in producible]
        if req.mode == "all_of" and missing:
            return f"method{'s' * (len(missing) > 1)} {', '.join(missing)} cannot be produced"
        if req.mode == "any_of" and len(missing) == len(req.methods):
            return f"none of {', '.join(req.methods)} can be produced"
    elif isinstance(req, MfaRequirement) and len(_factors(producible)) < 2:
        return f"the producible methods ({', '.join(sorted(producible))}) span one factor"
    elif isinstance(req, AcrRequirement):
        rank = ctx.level_rank(req.level)
        assert ctx.settings is not None
        if rank is not None and not any(_level_reachable(lvl.requires, ctx)
                                        for lvl in ctx.settings.acr_levels if lvl.rank >= rank):
            return f"no level at or above {req.level} can be reached with the enabled methods"
    return None


def _level_reachable(requires: tuple[Requirement, ...], ctx: LintContext) -> bool:
    # A session may hold every producible method at once, and each requirement only
    # asks for more methods, so the full set reaches a level if anything does.
    return all(_unmet(req, ctx) is None for req in requires)


def _atoms(cond: Condition) -> Iterator[Test]:
    if isinstance(cond, Test):
        yield cond
    elif isinstance(cond, Not):
        yield from _atoms(cond.operand)
    else:
        assert isinstance(cond, And | Or)
        for operand in cond.operands:
            yield from _atoms(operand)


def _holds(cond: Condition, truth: dict[tuple[str, str], bool]) -> bool:
    if isinstance(cond, Test):
        return truth[(cond.kind, cond.value)]
    if isinstance(cond, Not):
        return not _holds(cond.operand, truth)
    if isinstance(cond, And):
        return all(_holds(c, truth) for c in cond.operands)
    assert isinstance(cond, Or)
    return any(_holds(c, truth) for c in cond.operands)


def _client_choices(policy: Policy, ctx: LintContext, named: set[str]) -> list[str] | None:
    """Return the client_ids this policy can decide for: those it names and those whose
    ``policy:`` in clients.yaml names it (``""`` standing for any other, without a tenant)."""
    opted = [cid for cid, c in ctx.clients.items()
             if cid not in policy.clients and c.governing_policy_name(ctx.settings) == policy.name]
    if policy.clients or opted:
        return [*policy.clients, *opted]
    if ctx.settings is None and named:
        return [*sorted(named), ""]
    return None  # a policy that decides for nobody: nothing to say about its conditions


def satisfiable(cond: Condition, policy: Policy, ctx: LintContext,
                require: dict[tuple[str, str], bool] | None = None, *, addresses: bool = False) -> bool:
    """Return whether some request and session of this policy make ``cond`` (and ``require``) true.

    The search knows the domain: ``prompt=none`` excludes every other prompt
    value (OIDC Core §3.1.2.1), a request has one client and only this
    policy's clients reach it, and a session holds only producible methods.
    Undecidable cases (too many tests) count as satisfiable. With
    ``addresses``, the network tests must also agree on one client address.
    """
    require = require or {}
    atoms = sorted({(t.kind, t.value) for t in _atoms(cond)} | set(require))
    clients = _client_choices(policy, ctx, {v for k, v in atoms if k == "client"})
    free = [a for a in atoms if a[0] != "client"]
    if clients is None or len(free) > MAX_ATOMS:
        return True
    producible = ctx.producible
    for client in clients:
        for values in itertools.product((False, True), repeat=len(free)):
            truth = dict(zip(free, values, strict=True))
            truth.update({a: a[1] == client for a in atoms if a[0] == "client"})
            if any(truth[a] != v for a, v in require.items()):
                continue
            prompts = [a for a in free if a[0] == "prompt" and truth[a]]
            if ("prompt", "none") in prompts and len(prompts) > 1:
                continue
            if producible is not None and any(truth[a] and a[1] not in producible
                                              for a in free if a[0] == "session_amr"):
                continue
            if addresses and not _one_address(truth, ctx):
                continue
            if _holds(cond, truth):
                return True
    return False


# --- networks ---------------------------------------------------------------------------

Ranges = dict[int, list[tuple[int, int]]]  # IP version -> sorted, merged [first, last] address ranges


def _ranges(nets: Iterable[Network]) -> Ranges:
    out: Ranges = {4: [], 6: []}
    for net in sorted(nets, key=lambda n: (n.version, int(n.network_address))):
        first, last = int(net.network_address), int(net.broadcast_address)
        spans = out[net.version]
        if spans and first <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(last, spans[-1][1]))
        else:
            spans.append((first, last))
    return out


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if max(x0, y0) <= min(x1, y1)]


def _minus(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for start, last in a:
        first = start
        for b0, b1 in b:
            if b1 < first or b0 > last:
                continue
            if b0 > first:
                out.append((first, b0 - 1))
            first = b1 + 1
            if first > last:
                break
        if first <= last:
            out.append((first, last))
    return out


def _test_ranges(value: str, ctx: LintContext) -> Ranges | None:
    """Return the addresses a network test's value matches, or None when unknown (no tenant, bad CIDR)."""
    entries = value.split(NETWORK_SEPARATOR)
    named = ctx.settings.networks if ctx.settings is not None else None
    if any(is_network_name(e) and (named is None or e not in named) for e in entries):
        return None
    resolved = networks.resolve(entries, named or {})
    cidrs = [c for e in entries for c in (named[e] if is_network_name(e) and named else (e,))]
    if len(resolved.networks) < len({c.strip() for c in cidrs}):  # an entry did not parse (validate says)
        return None
    return _ranges(resolved.networks)


def _one_address(truth: dict[tuple[str, str], bool], ctx: LintContext) -> bool:
    """Return whether one client address makes every network test as true or false as ``truth`` says."""
    tests = [(value, held) for (kind, value), held in truth.items() if kind == "network"]
    if not tests:
        return True
    found = [(_test_ranges(value, ctx), held) for value, held in tests]
    if any(r is None for r, _ in found):
        return True  # cannot tell: count it as possible
    for version in (4, 6):
        left = [(0, 2 ** (32 if version == 4 else 128) - 1)]
        for ranges, held in found:
            assert ranges is not None
            left = _intersect(left, ranges[version]) if held else _minus(left, ranges[version])
        if left:
            return True
    return False


def network_lists(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """Network tests: some address can make the block hold, no entry is covered by another, none is empty."""
    named = ctx.settings.networks if ctx.settings is not None else {}
    for when in policy.whens:
        if (any(t.kind == "network" for t in _atoms(when.condition))
                and satisfiable(when.condition, policy, ctx)
                and not satisfiable(when.condition, policy, ctx, addresses=True)):
            yield _finding(when.span, "L_NETWORK_NEVER",
                           "no client address makes this condition true: the block applies only when the "
                           "address is unknown",
                           "look for network in X and not network in Y where X lies within Y, "
                           "or a named network with no CIDR")
    for when in policy.whens:
        for test in _atoms(when.condition):
            if test.kind != "network":
                continue
            entries = test.networks
            spans = test.item_spans or (test.span,) * len(entries)
            sets = []
            for entry, span in zip(entries, spans, strict=False):
                if is_network_name(entry) and entry in named and not named[entry]:
                    yield _finding(span, "L_NETWORK_EMPTY",
                                   f"network {entry!r} holds no CIDR in tenant.yaml: it matches no address",
                                   f"add its CIDRs under networks.{entry} in tenant.yaml, or drop it here")
                sets.append(_test_ranges(entry, ctx))
            for i, (entry, span, mine) in enumerate(zip(entries, spans, sets, strict=False)):
                if mine is None or not any(mine.values()):
                    continue
                for j, other in enumerate(sets):
                    if j == i or other is None or (j > i and mine == other):
                        continue  # two equal entries: the second is the one reported
                    if all(not _minus(mine[v], other[v]) for v in (4, 6)):
                        yield _finding(span, "L_NETWORK_OVERLAP",
                                       f"{networks.describe((entry,))} adds nothing to this test: every "
                                       f"address in it is in {networks.describe((entries[j],))} already",
                                       "drop it, or name the network you meant")
                        break


def _implied(req: Requirement, by: tuple[Requirement, ...], ctx: LintContext) -> bool:
    """Return whether requirements ``by`` (all applying) already enforce ``req``."""
    if isinstance(req, AmrRequirement):
        held = {m for r in by if isinstance(r, AmrRequirement) and r.mode == "all_of" for m in r.methods}
        if req.mode == "all_of":
            return set(req.methods) <= held
        return bool(held & set(req.methods)) or any(
            isinstance(r, AmrRequirement) and r.mode == "any_of" and set(r.methods) <= set(req.methods)
            for r in by)
    if isinstance(req, MfaRequirement):
        return any(isinstance(r, MfaRequirement) and (
            req.within is None or (r.within is not None and r.within <= req.within)) for r in by)
    if isinstance(req, AcrRequirement):
        rank = ctx.level_rank(req.level)
        ranks = [ctx.level_rank(r.level) for r in by if isinstance(r, AcrRequirement)]
        return any(isinstance(r, AcrRequirement) and r.level == req.level for r in by) or (
            rank is not None and any(other is not None and other >= rank for other in ranks))
    assert isinstance(req, ConsentRequirement)
    # a lifetime is implied by an unconditional one at least as short (issue 19)
    granted = {s for r in by if isinstance(r, ConsentRequirement)
               and (req.lifetime is None or (r.lifetime is not None and r.lifetime <= req.lifetime))
               for s in r.scopes}
    return set(req.scopes) <= granted


# --- policy rules ---------------------------------------------------------------------

def unsatisfiable_requirements(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """Requirements no session can meet: methods nobody produces, MFA with one factor, acr out of reach."""
    codes = {AmrRequirement: "L_AMR_UNSATISFIABLE", MfaRequirement: "L_MFA_UNSATISFIABLE",
             AcrRequirement: "L_ACR_UNSATISFIABLE"}
    for req in policy.all_requirements():
        why = _unmet(req, ctx)
        if why:
            yield _finding(req.span, codes[type(req)], f"this requirement can never be met: {why}",
                           "enable the methods in tenant.yaml methods (or trust an issuer that "
                           "vouches for them), or relax the requirement")


def requested_acr_mode(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """``when acr_values has X`` read against tenant.yaml ``acr_values.requested`` (issue 13).

    Voluntary: a block that tests a requested level without requiring it lets
    a lower session through. Enforced: ``when acr_values has X { require acr X }``
    repeats the check every policy already has (and reports the reason twice).
    """
    if ctx.settings is None:
        return
    voluntary = ctx.settings.acr_values_requested == "voluntary"
    for when in policy.whens:
        required = {r.level for r in when.requirements if isinstance(r, AcrRequirement)}
        for test in _atoms(when.condition):
            if test.kind != "acr_values":
                continue
            if voluntary and test.value not in required:
                yield _finding(test.span, "L_ACR_VALUES_VOLUNTARY",
                               f"acr_values has {test.value!r}: tenant.yaml makes requested acr_values "
                               "voluntary, and this block does not require the level",
                               f'add require acr "{test.value}" to the block, or set acr_values: '
                               "{requested: enforced} in tenant.yaml")
            elif (not voluntary and isinstance(when.condition, Test) and len(when.requirements) == 1
                  and required == {test.value}):
                yield _finding(when.span, "L_ACR_VALUES_ENFORCED",
                               f"requested acr_values are enforced (tenant.yaml), so requiring "
                               f"{test.value!r} when it is requested repeats that check",
                               "drop the when block (the reason acr_insufficient is reported twice)")


def dead_when_blocks(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """``when`` blocks that can never fire, or that add nothing to what always applies."""
    for when in policy.whens:
        if not satisfiable(when.condition, policy, ctx):
            yield _finding(when.span, "L_WHEN_NEVER",
                           "this when block can never fire: no request and session make its condition true",
                           "look for contradictions (x and not x, prompt none with another prompt, "
                           "a client this policy does not govern, a method nobody can produce)")
        elif all(_implied(req, policy.requirements, ctx) for req in when.requirements):
            what = ("it requires nothing" if not when.requirements
                    else "every requirement in it already applies unconditionally")
            yield _finding(when.span, "L_WHEN_SHADOWED", f"this when block adds nothing: {what}",
                           "delete the block, or make its requirements stricter than the policy's")


def fresh_login_on_silent(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """A freshness limit of a minute or less that applies to ``prompt=none`` requests."""
    hint = ("silent SSO will always fail, as with max_age=0 and prompt=none: allow a few minutes, "
            "or have the clients send prompt=login")
    limit = policy.session.max_auth_age
    if limit is not None and limit <= FRESH_LOGIN_SECONDS:
        yield _finding(policy.session.max_auth_age_span, "L_FRESH_LOGIN_SILENT",
                       f"max_auth_age {format_duration(limit)} demands a new login on nearly every "
                       "request, which prompt=none forbids", hint)
    guarded = [(None, r) for r in policy.requirements]
    guarded += [(w, r) for w in policy.whens for r in w.requirements]
    for when, req in guarded:
        if not (isinstance(req, MfaRequirement) and req.within is not None
                and req.within <= FRESH_LOGIN_SECONDS):
            continue
        if when is None or satisfiable(when.condition, policy, ctx, {("prompt", "none"): True}):
            yield _finding(req.span, "L_FRESH_LOGIN_SILENT",
                           f"mfa within {format_duration(req.within)} applies to prompt=none requests, "
                           "which can never present a second factor that fresh", hint)


def consent_lifetimes(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """``require consent … for D``: D must be able to end a grant, and leave silent sign-in a chance.

    A grant is kept on its session (SPEC §3), so it can never be older than
    ``require_login_after``: a longer lifetime never expires anything. A zero
    lifetime is refused by the parser (E_DURATION).
    """
    for req in policy.all_requirements():
        if not isinstance(req, ConsentRequirement) or req.lifetime is None:
            continue
        if ctx.settings is not None and req.lifetime > ctx.settings.lifetime.absolute:
            absolute = format_duration(ctx.settings.lifetime.absolute)
            yield _finding(req.lifetime_span, "L_CONSENT_OUTLIVES_SESSION",
                           f"consent for {format_duration(req.lifetime)} is longer than "
                           f"session.require_login_after {absolute}: a grant is kept on its session, "
                           "so this lifetime never expires one",
                           f"shorten it to at most {absolute}, or drop 'for' to keep grants for the session")
        if req.lifetime <= FRESH_LOGIN_SECONDS:
            yield _finding(req.lifetime_span, "L_CONSENT_LIFETIME_SHORT",
                           f"consent for {format_duration(req.lifetime)} expires almost at once: the "
                           "consent page is shown on nearly every sign-in and prompt=none fails",
                           "allow hours or days (e.g. for 30d)")


def trusted_issuer_keys(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """Trusted issuers' keys: present, and as long as their algorithm needs (RFC 7518 §3.2, §3.3)."""
    vctx = Context(ctx.settings, ctx.clients, ctx.base_dir)
    for trusted in policy.trust:
        for found in _trusted_issuer(trusted, vctx):  # validate.py's checks
            if found.code == "W_KEY_UNRESOLVED":
                yield Diagnostic(found.file, found.line, found.col, "L_TRUST_KEY_MISSING", found.message,
                                 found.hint, CODES["L_TRUST_KEY_MISSING"][0])
        yield from _key_strength(trusted, ctx)


def _key_strength(trusted: TrustedIssuer, ctx: LintContext) -> Iterator[Diagnostic]:
    if trusted.key is None:
        return
    data, problem = _load_key(SecretRef(trusted.key.source, trusted.key.name), ctx.base_dir)
    if problem or data is None:
        return
    span = trusted.key.span
    kind = _key_kind(data)
    if trusted.alg in HMAC_ALGS and kind is None and len(data) < HMAC_MIN_BYTES[trusted.alg]:
        yield _finding(span, "L_WEAK_KEY",
                       f"{trusted.alg} key is {len(data)} bytes; RFC 7518 §3.2 asks for at least "
                       f"{HMAC_MIN_BYTES[trusted.alg]}",
                       "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(64))'")
    key = load_pem_key(data) if kind == "RSA" else None
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey) and key.key_size < RSA_MIN_BITS:
        yield _finding(span, "L_WEAK_KEY",
                       f"RSA key has {key.key_size} bits; RFC 7518 §3.3 asks for at least {RSA_MIN_BITS}",
                       "have the issuer sign with a 2048-bit (or larger) RSA key, or an EC/Ed25519 key")


PolicyRule = Callable[[Policy, LintContext], Iterable[Diagnostic]]
def max_auth_age_beyond_lifetime(policy: Policy, ctx: LintContext) -> Iterator[Diagnostic]:
    """A ``max_auth_age`` at or past the tenant's session lifetimes never applies.

    A session ends ``session.lifetime`` after its last authentication and
    ``require_login_after`` after it began, so no authentication in a live
    session is ever that old: the limit reads as a restriction and restricts
    nothing. (A policy's ``inactivity`` cannot exceed the tenant's, which
    L_INACTIVITY_EXCEEDS_LIFETIME checks.)
    """
    age = policy.session.max_auth_age
    if ctx.settings is None or age is None:
        return
    life = ctx.settings.lifetime
    limit, name = min((life.sliding, "lifetime"), (life.absolute, "require_login_after"))
    if age >= limit:
        yield _finding(policy.session.max_auth_age_span, "L_MAX_AUTH_AGE_BEYOND_LIFETIME",
                       f"max_auth_age {format_duration(age)} is not shorter than session.{name} "
                       f"{format_duration(limit)} in tenant.yaml: no session lives that long, "
                       "so this limit never applies",
                       f"shorten max_auth_age below {format_duration(limit)}, or drop it")


POLICY_RULES: tuple[PolicyRule, ...] = (
    unsatisfiable_requirements, requested_acr_mode, dead_when_blocks,
    fresh_login_on_silent, max_auth_age_beyond_lifetime,
    trusted_issuer_keys,
    consent_lifetimes,
    network_lists,
)


# --- tenant rules -----------------------------------------------------------------------

def inactivity_beyond_lifetime(ctx: LintContext) -> Iterator[Diagnostic]:
    """The idle window should be shorter than the session's lifetimes, or it never ends a session."""
    if ctx.settings is None:
        return
    life = ctx.settings.lifetime
    limit, name = min((life.sliding, "lifetime"), (life.absolute, "require_login_after"))
    if life.inactivity > limit:
        yield _finding(ctx.settings.span("session.inactivity"), "L_INACTIVITY_EXCEEDS_LIFETIME",
                       f"inactivity {format_duration(life.inactivity)} is longer than session.{name} "
                       f"{format_duration(limit)}: the idle window can never end a session",
                       f"shorten session.inactivity below {format_duration(limit)}")


def refresh_beyond_session(ctx: LintContext) -> Iterator[Diagnostic]:
    """Refresh tokens should not outlive the session they came from."""
    if ctx.settings is None:
        return
    life = ctx.settings.lifetime
    refresh = ctx.settings.tokens.refresh_token_lifetime
    limit, name = min((life.sliding, "lifetime"), (life.absolute, "require_login_after"))
    if refresh > limit:
        yield _finding(ctx.settings.span("tokens.refresh_token_lifetime"), "L_REFRESH_OUTLIVES_SESSION",
                       f"refresh_token_lifetime {format_duration(refresh)} is longer than session.{name} "
                       f"{format_duration(limit)}: clients keep access after the session is gone",
                       f"set tokens.refresh_token_lifetime to at most {format_duration(limit)}")


TenantRule = Callable[[LintContext], Iterable[Diagnostic]]
TENANT_RULES: tuple[TenantRule, ...] = (inactivity_beyond_lifetime, refresh_beyond_session)


# --- running ------------------------------------------------------------------------------

# Anywhere in a comment, so a reason may come first: "# offline access on purpose; policy-sso: ignore[X]".
_IGNORE_RE = re.compile(r"#.*?policy-sso:\s*ignore\[([A-Za-z0-9_,\s]+)\]")


def _ignored_codes(line: str) -> set[str]:
    return {code.strip() for m in _IGNORE_RE.finditer(line) for code in m.group(1).split(",")}


def silence(findings: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Return the findings not silenced by ``# policy-sso: ignore[CODE]`` on their line or the line above."""
    lines: dict[str, list[str]] = {}
    kept = []
    for finding in findings:
        if finding.file not in lines:
            try:
                lines[finding.file] = Path(finding.file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                lines[finding.file] = []
        text = lines[finding.file]
        nearby = text[max(finding.line - 2, 0):finding.line]
        if not any(finding.code in _ignored_codes(line) for line in nearby):
            kept.append(finding)
    return kept


def lint_policies(ctx: LintContext, only: Iterable[Policy] | None = None, *,
                  tenant_rules: bool = True) -> list[Diagnostic]:
    """Return every unsilenced finding of the rules over a context's policies (or ``only`` these)."""
    findings: list[Diagnostic] = []
    for policy in ctx.policies if only is None else only:
        for rule in POLICY_RULES:
            findings.extend(rule(policy, ctx))
    if tenant_rules:
        for tenant_rule in TENANT_RULES:
            findings.extend(tenant_rule(ctx))
    return sort_diagnostics(silence(findings))


def lint_tenant(tenant: Tenant) -> list[Diagnostic]:
    """Return every unsilenced finding for a loaded tenant."""
    return lint_policies(LintContext(list(tenant.policies.values()), tenant.settings, tenant.clients,
                                     tenant.directory))


def lint_in_tenant(tenant: Tenant, policies: list[Policy]) -> list[Diagnostic]:
    """Return the findings for policies from files the tenant does not load (e.g. YAML twins).

    They are linted as if they replaced the tenant's policies of the same names.
    """
    names = {p.name for p in policies}
    others = [p for p in tenant.policies.values() if p.name not in names]
    ctx = LintContext(others + policies, tenant.settings, tenant.clients, tenant.directory)
    return lint_policies(ctx, policies, tenant_rules=False)
