"""Semantic validation: a table of small rules, each yielding diagnostics.

Like python-jsonschema's ``_keywords.py``: adding a rule is adding a row to
:data:`POLICY_RULES` or :data:`TENANT_RULES`. Rules see a policy (or the whole
tenant) together with the tenant context; none raises.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from policy_sso.config import MAX_INACTIVITY, Client, SecretRef, TenantSettings, User
from policy_sso.credentials import MIN_TOTP_SECRET_BITS, totp_secret_bits
from policy_sso.diagnostics import Diagnostic, did_you_mean
from policy_sso.model import (
    AcrRequirement,
    AmrRequirement,
    And,
    Condition,
    ConsentRequirement,
    Not,
    Or,
    Policy,
    Span,
    Test,
    TrustedIssuer,
    format_duration,
)
from policy_sso.networks import is_network_name, network_problem
from policy_sso.request import PROMPT_VALUES
from policy_sso.sessions.model import FACTOR_OF_METHOD

HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGS = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC P-256", "EdDSA": "Ed25519"}
SUPPORTED_ALGS = HMAC_ALGS | set(ASYMMETRIC_ALGS)
MIN_HMAC_KEY_BYTES = 32  # RFC 7518 §3.2: a key of the hash's size or larger
# The amr values a session can hold (RFC 8176 §2): the sign-in paths record pwd, otp, hwk, swk and
# pin, a trusted issuer may vouch for any of them, mfa is derived. tenant.yaml ``methods`` enables
# some; a name outside this set nothing ever produces (SPEC §7: an error with the near name).
KNOWN_METHODS = frozenset(FACTOR_OF_METHOD) | {"mfa"}
UNKNOWN_METHOD_HINT = "use an RFC 8176 amr value (pwd, otp, hwk, wia, …)"


@dataclass
class Context:
    """What rules may consult: the tenant's settings, clients and where relative paths start."""

    settings: TenantSettings | None = None
    clients: dict[str, Client] | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    # A tenant's tenant.yaml that did not load: what it enables or declares is unknown, so a rule
    # that needs it stays quiet rather than report follow-on errors (its own errors are the ones).
    settings_failed: bool = False
    # Policy names a policy file that did not load may define (None: any name): a client naming one
    # of them is not reported, nor a client left ungoverned (that file may name it).
    unloaded_policies: frozenset[str] | None = frozenset()

    def maybe_defined(self, name: str) -> bool:
        """Return whether policy ``name`` may be defined in a policy file that did not load."""
        return self.unloaded_policies is None or name in self.unloaded_policies

    @functools.cached_property
    def requestable_scopes(self) -> frozenset[str]:
        """Return every scope some registered client may request."""
        return frozenset(s for c in (self.clients or {}).values() for s in c.scopes)

    @functools.cached_property
    def opted_in(self) -> dict[str, list[Client]]:
        """Return, per policy name, the clients whose ``policy:`` key names it (built once: a tenant
        of 10,000 policies must not scan every client per policy)."""
        out: dict[str, list[Client]] = {}
        for client in (self.clients or {}).values():
            name = client.governing_policy_name(self.settings)
            if name is not None:
                out.setdefault(name, []).append(client)
        return out


def _at(span: Span, code: str, message: str, hint: str = "", severity: str = "error") -> Diagnostic:
    end_col = getattr(span, "end_col", 0)  # config spans may be plain (file, line, col)
    return Diagnostic(span.file, span.line, span.col, code, message, hint, severity,
                      span.line if end_col else 0, end_col)


def _item(spans: tuple[Span, ...], i: int, whole: Span) -> Span:
    """Return where the i-th value of a statement is written, or the statement's span if unknown."""
    return spans[i] if i < len(spans) else whole


def _value(construct: Test | AcrRequirement) -> Span:
    """Return where a test's or an acr requirement's value is written (else the construct's span)."""
    return construct.value_span if construct.value_span.line else construct.span


def _tests(cond: Condition) -> Iterator[Test]:
    if isinstance(cond, Test):
        yield cond
    elif isinstance(cond, Not):
        yield from _tests(cond.operand)
    elif isinstance(cond, And | Or):
        for operand in cond.operands:
            yield from _tests(operand)


# --- policy rules -------------------------------------------------------------

def unknown_methods(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """Methods must be RFC 8176 values (:data:`KNOWN_METHODS`); tenant.yaml cannot add others."""
    def hint(method: str) -> str:
        return did_you_mean(method, KNOWN_METHODS) or UNKNOWN_METHOD_HINT

    for req in policy.all_requirements():
        if isinstance(req, AmrRequirement):
            for i, method in enumerate(req.methods):
                if method not in KNOWN_METHODS:
                    yield _at(_item(req.method_spans, i, req.span), "E_UNKNOWN_METHOD",
                              f"unknown authentication method {method!r}",
                              hint(method))
    for when in policy.whens:
        for test in _tests(when.condition):
            if test.kind == "session_amr" and test.value not in KNOWN_METHODS:
                yield _at(_value(test), "E_UNKNOWN_METHOD",
                          f"unknown authentication method {test.value!r}", hint(test.value))
    for trusted in policy.trust:
        for i, method in enumerate(trusted.amr):
            if method not in KNOWN_METHODS:
                yield _at(_item(trusted.amr_spans, i, trusted.amr_span), "E_UNKNOWN_METHOD",
                          f"unknown authentication method {method!r}",
                          hint(method))


def undefined_acr(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """``require acr`` and ``when acr_values has`` must name a level defined in tenant.yaml.

    An undefined level in ``acr_values has`` is a typo (``loa:9``, or two levels
    in one string) whose block then guards a level the tenant never offers:
    an unknown acr is an error, as in ``require acr`` (SPEC §7).
    """
    if ctx.settings is None:
        return
    defined = [lvl.id for lvl in ctx.settings.acr_levels]

    def problem(level: str, span: Span) -> Diagnostic:
        return _at(span, "E_UNKNOWN_ACR", f"acr level {level!r} is not defined in tenant.yaml",
                   did_you_mean(level, defined) or _acr_hint(level, defined))

    for req in policy.all_requirements():
        if isinstance(req, AcrRequirement) and req.level not in defined:
            yield problem(req.level, _value(req))
    for when in policy.whens:
        for test in _tests(when.condition):
            if test.kind == "acr_values" and test.value not in defined:
                yield problem(test.value, _value(test))


def _acr_hint(level: str, defined: list[str]) -> str:
    """Return the hint for an undefined level: one test a level when it lists several, else the levels."""
    parts = level.split()
    if len(parts) > 1 and all(part in defined for part in parts):
        return ("acr_values has tests one level: write one test each, e.g. "
                + " or ".join(f'acr_values has "{part}"' for part in parts))
    return "defined levels: " + (", ".join(defined) or "none")


def inactivity_window(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """A policy's inactivity may only shorten the tenant's, never exceed 604800 s."""
    window = policy.session.inactivity
    if window is None:
        return
    span = policy.session.inactivity_span
    if window > MAX_INACTIVITY:
        yield _at(span, "E_INACTIVITY_MAX",
                  f"inactivity {format_duration(window)} exceeds the maximum of 7d (604800 s)")
    elif ctx.settings and window > ctx.settings.lifetime.inactivity:
        yield _at(span, "E_INACTIVITY_LONGER",
                  f"inactivity {format_duration(window)} is longer than the tenant's "
                  f"{format_duration(ctx.settings.lifetime.inactivity)}",
                  "a policy may only shorten the tenant's inactivity window")


def condition_values(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """``prompt is`` must name a prompt value; ``client is`` a registered client."""
    for when in policy.whens:
        for test in _tests(when.condition):
            if test.kind == "prompt" and test.value not in PROMPT_VALUES:
                yield _at(_value(test), "E_VALUE", f"unknown prompt value {test.value!r}",
                          "one of " + ", ".join(sorted(PROMPT_VALUES)))
            if test.kind == "client" and ctx.clients is not None and test.value not in ctx.clients:
                yield _at(_value(test), "E_UNKNOWN_CLIENT", f"client {test.value!r} is not registered",
                          did_you_mean(test.value, ctx.clients) or "register it in clients.yaml")


def governed_clients(policy: Policy, ctx: Context) -> list[Client]:
    """Return the registered clients ``policy`` governs: those it names, those whose ``policy:`` names it."""
    if ctx.clients is None:
        return []
    named = [ctx.clients[c] for c in policy.clients if c in ctx.clients]
    return named + [c for c in ctx.opted_in.get(policy.name, []) if c.client_id not in policy.clients]


def unknown_scopes(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """Scopes in ``require consent`` and ``when scope has`` must be ones a governed client may request.

    A consent for a scope no client may request can never be granted (silent
    sign-in refused for ever); a ``when scope has`` on such a scope never fires.
    Scopes the tenant declares (tenant.yaml ``scopes``) are accepted too.
    """
    if ctx.clients is None or ctx.settings_failed:
        return  # a lone file: no clients to check against; or the scopes tenant.yaml declares are unknown
    governed = governed_clients(policy, ctx)
    declared = ctx.settings.scopes if ctx.settings else frozenset()
    # a policy governing no one: any client's scopes
    known = ({s for c in governed for s in c.scopes} if governed else set(ctx.requestable_scopes)) | declared
    whose = (f"no client of policy {policy.name!r} ({', '.join(c.client_id for c in governed)})"
             if governed else "no registered client")

    def problem(scope: str, span: Span, what: str) -> Diagnostic:
        return _at(span, "E_UNKNOWN_SCOPE", f"{what} scope {scope!r}, which {whose} may request",
                   did_you_mean(scope, known)
                   or "add it to the client's scopes in clients.yaml, or declare it in tenant.yaml scopes")

    for req in policy.all_requirements():
        if isinstance(req, ConsentRequirement):
            for i, scope in enumerate(req.scopes):
                if scope not in known:
                    yield problem(scope, _item(req.scope_spans, i, req.span), "consent required for")
    for when in policy.whens:
        for test in _tests(when.condition):
            if test.kind == "scope" and test.value not in known:
                yield problem(test.value, _value(test), "condition on")


def _load_key(ref: SecretRef, base: Path) -> tuple[bytes | None, str]:
    """Return the key's bytes and a problem ("" when readable, "missing" when absent)."""
    data = ref.read(base)
    return (data, "") if data else (None, "missing")


def load_pem_key(data: bytes) -> Any | None:
    """Return the public or private key a PEM text holds, or None (not PEM, or unreadable)."""
    if b"-----BEGIN" not in data:
        return None
    for loader in (load_pem_public_key, lambda d: load_pem_private_key(d, password=None)):
        try:
            return loader(data)
        except (ValueError, TypeError):
            continue
    return None


def _key_kind(data: bytes) -> str | None:
    """Return RSA, EC P-256, Ed25519 for a PEM key, "PEM" for another PEM, None for raw bytes."""
    if b"-----BEGIN" not in data:
        return None
    key = load_pem_key(data)
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "EC P-256" if key.curve.name == "secp256r1" else f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return "PEM"


def _algs_for(kind: str) -> str:
    return "/".join(a for a, k in ASYMMETRIC_ALGS.items() if k == kind) or "an asymmetric alg"


def trusted_issuers(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """A trust block needs an issuer, a usable key that fits its alg, a lifetime and amr."""
    seen: set[str] = set()
    for trusted in policy.trust:
        yield from _trusted_issuer(trusted, ctx)
        if trusted.issuer in seen:
            yield _at(trusted.issuer_span, "E_DUPLICATE", f"issuer {trusted.issuer!r} is trusted twice")
        seen.add(trusted.issuer)


# What a server does without the variable (forced_sso.verifier_for): it starts and reloads, and
# answers every login_hint_token of the policy's clients with server_error until the key is there.
KEY_UNRESOLVED_HINT = ("set it where the server runs: without it the server still starts, but refuses "
                       "every login_hint_token for this policy's clients (server_error)")


def _trusted_issuer(t: TrustedIssuer, ctx: Context) -> Iterator[Diagnostic]:
    written = t.unchecked  # written wrongly, and reported so (YAML schema): not missing as well
    if not t.issuer and "issuer" not in written:
        yield _at(t.span, "E_TRUST_NO_ISSUER", "trust block has no issuer")
    if not t.max_lifetime and "max_lifetime" not in written:
        yield _at(t.span, "E_TRUST_NO_LIFETIME", "trust block has no max_lifetime",
                  "add e.g. max_lifetime 2m: hint tokens must be short-lived")
    if not t.amr and "amr" not in written:
        yield _at(t.span, "E_TRUST_NO_AMR", "trust block declares no amr",
                  "say what a valid hint proves, e.g. amr \"wia\"")
    if t.alg.lower() == "none":
        yield _at(t.alg_span, "E_ALG_NONE", "alg none is never accepted for login_hint_token",
                  "sign hints with one of " + ", ".join(sorted(SUPPORTED_ALGS)))
    elif t.alg not in SUPPORTED_ALGS and (t.alg or "alg" not in written):
        yield _at(t.alg_span, "E_ALG_UNSUPPORTED",
                  f"unsupported alg {t.alg!r}" if t.alg else "trust block has no alg",
                  did_you_mean(t.alg, SUPPORTED_ALGS) or "one of " + ", ".join(sorted(SUPPORTED_ALGS)))
    if t.key is None:  # a missing key is its own mistake, whatever the alg
        if "key" not in written:
            yield _at(t.span, "E_TRUST_NO_KEY", "trust block has no key",
                      'add key env "VAR" or key file "path"')
        return
    if t.alg not in SUPPORTED_ALGS:
        return  # whether the key fits the alg cannot be told
    ref = SecretRef(t.key.source, t.key.name)
    data, problem = _load_key(ref, ctx.base_dir)
    span = t.key.span
    if problem:
        if t.key.source == "env":  # CI validates without production secrets: say so, don't fail
            yield _at(span, "W_KEY_UNRESOLVED", f"environment variable {t.key.name} is not set",
                      KEY_UNRESOLVED_HINT, severity="warning")
        else:
            yield _at(span, "E_KEY_UNREADABLE", f"key file {t.key.name!r} cannot be read")
        return
    assert data is not None
    kind = _key_kind(data)
    if t.alg in HMAC_ALGS:
        if kind is not None:
            yield _at(span, "E_ALG_KEY_MISMATCH",
                      f"alg {t.alg} with a {kind} key: a public key must never be used as an HMAC secret",
                      f"use the alg that fits the key ({_algs_for(kind)})")
        elif len(data) < MIN_HMAC_KEY_BYTES:
            yield _at(span, "E_WEAK_KEY",
                      f"HMAC key is {len(data)} bytes; at least {MIN_HMAC_KEY_BYTES} required",
                      "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'")
    elif kind != ASYMMETRIC_ALGS[t.alg]:
        yield _at(span, "E_ALG_KEY_MISMATCH",
                  f"alg {t.alg} needs a {ASYMMETRIC_ALGS[t.alg]} public key, found "
                  f"{kind or 'a non-PEM secret'}")


def network_entries(policy: Policy, ctx: Context) -> Iterator[Diagnostic]:
    """``network in`` entries must be valid CIDRs (no host bits) or networks named in tenant.yaml."""
    named = ctx.settings.networks if ctx.settings else None
    for when in policy.whens:
        for test in _tests(when.condition):
            if test.kind != "network":
                continue
            for i, entry in enumerate(test.networks):
                span = _item(test.item_spans, i, _value(test))
                if is_network_name(entry):
                    if named is not None and entry not in named:
                        yield _at(span, "E_UNKNOWN_NETWORK",
                                  f"network {entry!r} is not defined in tenant.yaml networks",
                                  did_you_mean(entry, named) or "defined networks: "
                                  + (", ".join(sorted(named)) or "none (add networks: to tenant.yaml)"))
                elif (problem := network_problem(entry)) is not None:
                    yield _at(span, "E_CIDR", *problem)


PolicyRule = Callable[[Policy, Context], Iterable[Diagnostic]]
POLICY_RULES: tuple[PolicyRule, ...] = (
    unknown_methods, undefined_acr, inactivity_window, condition_values, trusted_issuers, unknown_scopes,
    network_entries,
)


# --- rules across files -----------------------------------------------------------

def _client_spans(policy: Policy) -> Iterator[tuple[str, Span]]:
    yield from zip(policy.clients, policy.clients_span or [policy.span] * len(policy.clients), strict=False)


def duplicate_policies(policies: list[Policy], ctx: Context) -> Iterator[Diagnostic]:
    """Policy names are unique; every client_id belongs to at most one policy.

    Each is a mistake with two (or more) places, reported once: at the later
    definition or claim, each other place a note. It is also told from each
    other place (yielded after it, see :data:`TWO_SIDED`), which is what
    ``validate`` of that file alone shows: whichever file is new, validating
    it fails on the mistake.
    """
    names: dict[str, Policy] = {}
    owners: dict[str, list[tuple[Policy, Span]]] = {}
    for policy in policies:
        if policy.name in names:
            first = names[policy.name].span
            message = f"policy {policy.name!r} is defined twice"
            yield _related(_at(policy.span, "E_DUPLICATE_POLICY", message, f"first defined at {first}"),
                           first, "first defined here")
            yield _related(_at(first, "E_DUPLICATE_POLICY", message, f"defined again at {policy.span}"),
                           policy.span, "defined again here")
        names.setdefault(policy.name, policy)
        for client, span in _client_spans(policy):
            owners.setdefault(client, []).append((policy, span))
    for client, claims in owners.items():
        if len(claims) < 2:
            continue
        names_ = [p.name for p, _ in claims]
        shown = [f"{n!r}" if names_.count(n) == 1 else f"{n!r} at {s}" for n, (_, s) in zip(
            names_, claims, strict=True)]  # one policy defined twice: tell the two apart
        listed = ", ".join(shown[:-1]) + f" and {shown[-1]}"
        for _, span in reversed(claims):  # the last claim first: the report; then the other sides
            others = [(p, s) for p, s in claims if s is not span]
            problem = _at(span, "E_DUPLICATE_CLIENT",
                          f"client {client!r} is claimed by {len(claims)} policies: {listed}",
                          "a client belongs to exactly one policy: remove it from all but one")
            for p, s in others:
                problem = _related(problem, s, f"also claimed by policy {p.name!r}")
            yield problem


def _related(diagnostic: Diagnostic, span: Span, label: str) -> Diagnostic:
    """Return ``diagnostic`` with ``span`` attached as a related place (both halves of one mistake)."""
    from dataclasses import replace

    from policy_sso.diagnostics import Related

    note = Related(span.file, span.line, span.col, label, getattr(span, "end_col", 0))
    return replace(diagnostic, related=(*diagnostic.related, note))


def unknown_clients(policies: list[Policy], ctx: Context) -> Iterator[Diagnostic]:
    """A policy may only name registered clients."""
    if ctx.clients is None:
        return
    for policy in policies:
        for client, span in _client_spans(policy):
            if client not in ctx.clients:
                yield _at(span, "E_UNKNOWN_CLIENT", f"client {client!r} is not registered in clients.yaml",
                          did_you_mean(client, ctx.clients) or "register it in clients.yaml")


def default_policy(policies: list[Policy], ctx: Context) -> Iterator[Diagnostic]:
    """tenant.yaml's default_policy, when written there, must exist."""
    names = {p.name for p in policies}
    if (ctx.settings and "default_policy" in ctx.settings.spans and ctx.settings.default_policy not in names
            and not ctx.maybe_defined(ctx.settings.default_policy)):
        yield _at(ctx.settings.span("default_policy"), "E_UNKNOWN_POLICY",
                  f"default_policy {ctx.settings.default_policy!r} is not defined",
                  did_you_mean(ctx.settings.default_policy, names))


def governing_policies(policies: list[Policy], ctx: Context) -> Iterator[Diagnostic]:
    """Every registered client has exactly one governing policy, never by accident (SPEC §7 fail closed).

    A client is governed by the policy that names it in ``clients``, or by the
    policy its own ``policy:`` key in clients.yaml names (``policy: default``:
    tenant.yaml's default_policy). A client with neither is an error.
    """
    if ctx.clients is None:
        return
    by_name = {p.name: p for p in policies}
    claims: dict[str, list[tuple[Policy, Span]]] = {}
    unregistered: list[tuple[str, Policy, Span]] = []
    for policy in policies:
        for client, span in _client_spans(policy):
            claims.setdefault(client, []).append((policy, span))
            if client not in ctx.clients:
                unregistered.append((client, policy, span))
    settings = ctx.settings
    default_reported = (settings is not None and "default_policy" in settings.spans
                        and settings.default_policy not in by_name)  # by default_policy(): said once
    incomplete = ctx.unloaded_policies != frozenset()  # a policy file did not load: it may name any client
    for client in ctx.clients.values():
        named = client.governing_policy_name(ctx.settings)
        listed = claims.get(client.client_id, [])
        if named is None:
            if not listed and not incomplete:
                yield from _no_policy(client, unregistered, ctx)
            continue
        where = client.policy_span or client.span
        via = " (default_policy in tenant.yaml)" if client.policy != named else ""
        unknown = ctx.maybe_defined(named) or (ctx.settings_failed and client.policy == "default")
        if named not in by_name and not (via and default_reported) and not unknown:
            defined = ", ".join(sorted(by_name)) or "none"
            hint = did_you_mean(named, by_name) or (
                f"define a policy named 'default', or set default_policy in tenant.yaml to one of: {defined}"
                if client.policy == "default" and not via else f"defined policies: {defined}")
            yield _at(where, "E_UNKNOWN_POLICY",
                      f"client {client.client_id!r} names policy {named!r}{via}, which is not defined", hint)
        for policy, span in listed:
            if policy.name == named:
                continue
            message = (f"client {client.client_id!r} is governed by policy {named!r} (its policy key in "
                       f"clients.yaml) and also named by policy {policy.name!r}")
            hint = "a client belongs to exactly one policy: drop one of the two"
            yield _related(_at(where, "E_POLICY_CONFLICT", message, hint), span,
                           f"named by policy {policy.name!r}")
            yield _related(_at(span, "E_POLICY_CONFLICT", message, hint), where,
                           "its policy key in clients.yaml")


def _no_policy(client: Client, unregistered: list[tuple[str, Policy, Span]],
               ctx: Context) -> Iterator[Diagnostic]:
    """Yield the error for a client no policy governs, unless a policy names a near name instead:
    then unknown_clients' "did you mean" on that name is the one error for the one mistake."""
    if any(client.client_id in did_you_mean(name, [client.client_id]) for name, _, _ in unregistered):
        return
    default = ctx.settings.default_policy if ctx.settings else "default"
    hint = (f"name it in a policy's clients, or write `policy: default` under it in clients.yaml "
            f"to put it on the default policy {default!r}")
    yield _at(client.span, "E_NO_POLICY", f"client {client.client_id!r} is governed by no policy", hint)


def client_algorithms(policies: list[Policy], ctx: Context) -> Iterator[Diagnostic]:
    """A client's ID token algorithm must be one tenant.yaml ``tokens.algorithms`` lists.

    The provider signs ID tokens (and the client's logout tokens, Back-Channel
    Logout §2.6) with the registered alg (OIDC Registration §2); one the tenant
    does not sign with must not be replaced by another quietly (SPEC §7).
    ``policies`` is unused: the rule joins clients.yaml and tenant.yaml.
    """
    if ctx.settings is None or ctx.clients is None:
        return
    configured = ctx.settings.tokens.algorithms
    where = ctx.settings.span("tokens.algorithms")
    for client in ctx.clients.values():
        alg = client.id_token_signed_response_alg
        if alg in configured:
            continue
        default = " (its default when none is written)" if alg == "RS256" else ""
        problem = _at(client.span, "E_CLIENT_ALG",
                      f"client {client.client_id!r} has id_token_signed_response_alg {alg}{default}, which "
                      "tenant.yaml tokens.algorithms does not list",
                      f"configured algorithms: {', '.join(configured)}; set id_token_signed_response_alg "
                      f"to one of them, or add {alg} to tokens.algorithms")
        yield _related(problem, where, "the algorithms the tenant signs with")


SetRule = Callable[[list[Policy], Context], Iterable[Diagnostic]]
SET_RULES: tuple[SetRule, ...] = (duplicate_policies, unknown_clients, default_policy, governing_policies,
                                  client_algorithms)


# --- tenant, clients and users ---------------------------------------------------

def tenant_rules(settings: TenantSettings) -> Iterator[Diagnostic]:
    """Check tenant.yaml beyond its schema."""
    if settings.lifetime.inactivity > MAX_INACTIVITY:
        yield _at(settings.span("session.inactivity"), "E_INACTIVITY_MAX",
                  f"inactivity {format_duration(settings.lifetime.inactivity)} exceeds 7d (604800 s)")
    yield from _enabled_methods(settings)
    for level in settings.acr_levels:
        for req in level.requires:
            if isinstance(req, AmrRequirement):
                for method in req.methods:
                    if method not in KNOWN_METHODS:
                        yield _at(level.span, "E_UNKNOWN_METHOD", f"unknown authentication method {method!r}",
                                  did_you_mean(method, KNOWN_METHODS) or UNKNOWN_METHOD_HINT)
    ids = [lvl.id for lvl in settings.acr_levels]
    for level in settings.acr_levels:
        if ids.count(level.id) > 1 and ids.index(level.id) != level.rank:
            yield _at(level.span, "E_DUPLICATE", f"acr level {level.id!r} is defined twice")
    for cidr in settings.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield _at(settings.span("trusted_proxies"), "E_TRUSTED_PROXY",
                      f"trusted_proxies: {cidr!r} is not an IP address or CIDR", "e.g. 10.0.0.0/8 or ::1/128")
    for name, cidrs in settings.networks.items():
        for i, cidr in enumerate(cidrs):
            if (problem := network_problem(cidr)) is not None:
                message, hint = problem
                yield _at(settings.span(f"networks.{name}.{i}"), "E_CIDR",
                          f"networks.{name}: {message}", hint)


def _enabled_methods(settings: TenantSettings) -> Iterator[Diagnostic]:
    """tenant.yaml ``methods`` may enable only methods a session can hold (:data:`KNOWN_METHODS`).

    A misspelt entry (``pwdd``) would otherwise let a policy require a method
    no sign-in ever records: validate and lint would pass a client no one can
    sign in to silently (SPEC §7).
    """
    for method in sorted(settings.methods - KNOWN_METHODS):
        yield _at(_list_item_span(settings, "methods", method), "E_UNKNOWN_METHOD",
                  f"methods: unknown authentication method {method!r}",
                  did_you_mean(method, KNOWN_METHODS) or UNKNOWN_METHOD_HINT)


def _list_item_span(settings: TenantSettings, key: str, value: str) -> Span:
    """Return where ``value`` is written in tenant.yaml's list ``key``, else where the list is.

    The settings keep the list as a set and the spans by index: the item whose
    source text is ``value`` (bare or quoted) is the one.
    """
    i = 0
    while (span := settings.spans.get(f"{key}.{i}")) is not None:
        if _source_text(span).strip("\"'") == value:
            return span
        i += 1
    return settings.span(key)


def _source_text(span: Span) -> str:
    """Return the text a one-line span covers in its file ("" when it cannot be read)."""
    if not getattr(span, "end_col", 0):
        return ""
    try:
        lines = Path(span.file).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return lines[span.line - 1][span.col - 1:span.end_col - 1] if 0 < span.line <= len(lines) else ""


def client_rules(clients: list[Client]) -> Iterator[Diagnostic]:
    """Check clients.yaml beyond its schema: unique ids, secrets that fit the client type."""
    seen: set[str] = set()
    for c in clients:
        if c.client_id in seen:
            yield _at(c.span, "E_DUPLICATE", f"client_id {c.client_id!r} is registered twice")
        seen.add(c.client_id)
        if c.is_public and c.secret:
            yield _at(c.span, "E_CLIENT_SECRET", f"public client {c.client_id!r} must not have a secret")
        if not c.is_public and not c.secret:
            yield _at(c.span, "E_CLIENT_SECRET", f"confidential client {c.client_id!r} has no secret",
                      "add secret: {env: VAR} or {file: path}")
        if c.is_public and "client_credentials" in c.grant_types:
            yield _at(c.span, "E_GRANT", f"public client {c.client_id!r} cannot use client_credentials")
        if "authorization_code" in c.grant_types and not c.redirect_uris:
            yield _at(c.span, "E_REDIRECT_URIS", f"client {c.client_id!r} has no redirect_uris")


def user_rules(users: list[User], base_dir: Path) -> Iterator[Diagnostic]:
    """Check users.yaml beyond its schema: unique subjects and usernames, usable TOTP secrets."""
    subs: set[str] = set()
    names: set[str] = set()
    for u in users:
        if u.sub in subs:
            yield _at(u.span, "E_DUPLICATE", f"subject {u.sub!r} appears twice")
        if u.username in names:
            yield _at(u.span, "E_DUPLICATE", f"username {u.username!r} appears twice")
        subs.add(u.sub)
        names.add(u.username)
        if u.totp_secret is not None:
            yield from _totp_secret(u, u.totp_secret, base_dir)


def _totp_secret(user: User, ref: SecretRef, base_dir: Path) -> Iterator[Diagnostic]:
    """A TOTP secret must be readable base32 of 128 bits or more; otherwise the user could never pass otp."""
    data, problem = _load_key(ref, base_dir)
    if problem:
        if ref.source == "env":
            yield _at(ref.span, "W_KEY_UNRESOLVED", f"environment variable {ref.name} is not set",
                      f"until it is, {user.username!r} cannot complete a second factor", severity="warning")
        else:
            yield _at(ref.span, "E_KEY_UNREADABLE", f"TOTP secret file {ref.name!r} cannot be read")
        return
    assert data is not None
    bits = totp_secret_bits(data.decode(errors="replace"))
    if bits is None:
        yield _at(ref.span, "E_TOTP_SECRET",
                  f"the TOTP secret of {user.username!r} is not base32 (RFC 4648 §6)", TOTP_HINT)
    elif bits < MIN_TOTP_SECRET_BITS:
        yield _at(ref.span, "E_WEAK_KEY", f"the TOTP secret of {user.username!r} is {bits} bits; at least "
                  f"{MIN_TOTP_SECRET_BITS} required (RFC 4226 §4)", TOTP_HINT)


TOTP_HINT = "generate one with: python -c 'import pyotp; print(pyotp.random_base32())'"


STANDALONE_SET_RULES: tuple[SetRule, ...] = (duplicate_policies, unknown_clients)


# Codes of mistakes with several places that a rule tells once per place, the report first: the
# same code and message, the same places (its own and its notes). Reported once.
TWO_SIDED = frozenset({"E_DUPLICATE_POLICY", "E_DUPLICATE_CLIENT", "E_POLICY_CONFLICT"})


def _places(d: Diagnostic) -> frozenset[tuple[str, int, int]]:
    return frozenset({(d.file, d.line, d.col), *((r.file, r.line, r.col) for r in d.related)})


def validate_policies(policies: list[Policy], ctx: Context, set_rules: tuple[SetRule, ...] = SET_RULES,
                      other_sides: dict[Diagnostic, list[Diagnostic]] | None = None) -> list[Diagnostic]:
    """Return every diagnostic of the policy rules and the given set rules, each mistake once.

    A mistake of :data:`TWO_SIDED` is returned as its rule tells it first;
    ``other_sides``, when given, receives how it is told at each of its other
    places (what checking one of those files alone shows).
    """
    out: list[Diagnostic] = []
    for policy in policies:
        for rule in POLICY_RULES:
            out.extend(rule(policy, ctx))
    reported: dict[tuple[str, str, frozenset[tuple[str, int, int]]], Diagnostic] = {}
    for set_rule in set_rules:
        for d in set_rule(policies, ctx):
            if d.code not in TWO_SIDED:
                out.append(d)
                continue
            key = (d.code, d.message, _places(d))
            if key not in reported:
                reported[key] = d
                out.append(d)
            elif other_sides is not None:
                other_sides.setdefault(reported[key], []).append(d)
    return out
