"""The check table: each requirement a named check with its reason code, source
location, failing predicate and explanation.

Shaped like node-oidc-provider's interaction policy
(``lib/helpers/interaction_policy/prompts/login.js``): a check is data, so a
decision's reasons fall out of which checks failed. ``fails`` is a small
Python expression over ``r`` (the :class:`~policy_sso.request.AuthRequest`),
``s`` (the :class:`~policy_sso.sessions.model.Session`) and ``now``, with
``{0}``, ``{1}``… standing for ``consts``, and two locals the generated
function binds once: ``m`` (``s.methods``, method -> latest time) and ``g``
(the scopes granted to ``r.client_id``). :mod:`policy_sso.compile` splices the
expressions of a policy into one generated function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policy_sso.decision import CONSENT_REQUIRED, LOGIN_REQUIRED, Reason
from policy_sso.model import (
    AcrRequirement,
    AmrRequirement,
    ConsentRequirement,
    MfaRequirement,
    Requirement,
    Span,
    format_duration,
)
from policy_sso.sessions.model import (
    ABSOLUTE_LIFETIME_EXCEEDED,
    ENDED_BY_ADMIN,
    FACTOR_OF_METHOD,
    INACTIVITY_TIMEOUT,
    LOGGED_OUT,
    PASSWORD_CHANGED,
    REPLACED_BY_SIGN_IN,
    SECOND_FACTORS,
    SESSION_EXPIRED,
    SESSION_LIMIT,
    SessionEnd,
)

Observe = Callable[[Any, Any, int], str]
AcrRank = Callable[[Any], int]

EMPTY: frozenset[str] = frozenset()


def human_duration(seconds: int) -> str:
    """Return ``seconds`` as ``9h 1s``-style text (exact, largest units first)."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts)


# RemedyHint.acr for the checks of the request's own acr (acr_values, or essential in claims):
# the level is the request's, known only when a decision is made
REQUESTED_ACR = "acr_values"
ESSENTIAL_ACR = "claims"


@dataclass(frozen=True)
class RemedyHint:
    """What resolves a failed check: the remedy action, parameters to retry with, and what to present.

    ``acr`` is the least level the retry's ``acr_values`` must name for this
    check (a level id, or REQUESTED_ACR / ESSENTIAL_ACR for the level the
    request asks for); the remedy names the highest such level of the failed
    checks, never below the request's own. ``solve``: presenting methods
    resolves the check, so the remedy's methods are those that, added to the
    session, make its predicate pass (:mod:`policy_sso.compile`); ``methods``
    are the ones it names, tried beside the tenant's enabled methods.
    """

    action: str
    params: tuple[tuple[str, str], ...] = ()
    methods: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    acr: str | None = None
    solve: bool = False


@dataclass(frozen=True)
class Check:
    """A named check: fails when ``fails`` is true; explains itself with ``observe``."""

    reason: str
    description: str
    error: str
    span: Span
    fails: str
    required: str
    observe: Observe = field(compare=False)
    remedy: RemedyHint = RemedyHint("login", (("prompt", "login"),))
    consts: tuple[Any, ...] = ()

    @property
    def source(self) -> str:
        """Return ``FILE:LINE`` of what produced this check."""
        return f"{self.span.file}:{self.span.line}"


# --- session validity (login_required) --------------------------------------

def sso_disabled(span: Span) -> Check:
    """Return the check that, with single sign-on off, a session serves only the client it was made for.

    IBM App ID's "SSO off": each app signs the user in itself. The session the
    user just created at this client (and the interaction that created it)
    still serves this client; one from another client does not.
    """
    return Check("sso_disabled", "single sign-on is turned off: the session was created at another client",
                 LOGIN_REQUIRED, span, "s.created_for != r.client_id",
                 "a session created at this client (sso.active: false)",
                 lambda r, s, now: f"session created at {s.created_for or 'an unrecorded client'}")


def _elapsed(reason: str, description: str, *, since: str, limit: int, span: Span, required: str,
             observed: str) -> Check:
    """Return a check that the time since a session instant (``s.<since>``) is within ``limit``.

    ``required`` and ``observed`` are templates filled with the limit and the
    elapsed time, e.g. ``"idle at most {limit}"`` and ``"idle for {elapsed}"``.
    """
    return Check(
        reason, description, LOGIN_REQUIRED, span, f"now - s.{since} > {int(limit)}",
        required.format(limit=format_duration(limit)),
        lambda r, s, now: observed.format(elapsed=human_duration(now - getattr(s, since))))


def sliding_lifetime(limit: int, span: Span) -> Check:
    """Return the check for the sliding lifetime counted from the latest authentication."""
    return _elapsed("session_expired", "the session outlived its lifetime since the last authentication",
                    since="auth_time", limit=limit, span=span,
                    required="at most {limit} since the last authentication",
                    observed="last authentication {elapsed} ago")


def absolute_lifetime(limit: int, span: Span) -> Check:
    """Return the check for ``require_login_after``, counted from creation."""
    return _elapsed("absolute_lifetime_exceeded", "the session is older than require_login_after",
                    since="created_at", limit=limit, span=span,
                    required="at most {limit} since the session was created",
                    observed="created {elapsed} ago")


def inactivity(limit: int, span: Span) -> Check:
    """Return the check for the idle window (the policy's, else the tenant's)."""
    return _elapsed("inactivity_timeout", "the session was idle longer than the inactivity window",
                    since="last_seen", limit=limit, span=span, required="idle at most {limit}",
                    observed="idle for {elapsed}")


def max_auth_age(limit: int, span: Span) -> Check:
    """Return the check for the policy's ``max_auth_age``."""
    return _elapsed("max_age_exceeded", "the last authentication is older than the policy's max_auth_age",
                    since="auth_time", limit=limit, span=span, required="auth_time at most {limit} ago",
                    observed="auth_time {elapsed} ago")


def request_max_age(span: Span) -> Check:
    """Return the check for the request's ``max_age`` (OIDC Core §3.1.2.1; 0 forces login)."""
    return Check(
        "max_age_exceeded", "the last authentication is older than the request's max_age",
        LOGIN_REQUIRED, span,
        "r.max_age is not None and (r.max_age == 0 or now - s.auth_time > r.max_age)",
        "an authentication within max_age",
        lambda r, s, now: (f"auth_time {human_duration(now - s.auth_time)} ago, "
                           f"max_age {r.max_age}s"))


def prompt_login(span: Span) -> Check:
    """Return the check that ``prompt=login`` always forces a new authentication."""
    return Check("prompt_login", "the request asks for a fresh login (prompt=login)",
                 LOGIN_REQUIRED, span, "'login' in r.prompt", "no prompt=login",
                 lambda r, s, now: "prompt=login")


def subject_mismatch(span: Span) -> Check:
    """Return the check that hints (id_token_hint, login_hint) name the session's user."""
    return Check(
        "subject_mismatch", "the request names another user than the session's",
        LOGIN_REQUIRED, span,
        "(r.id_token_hint_sub is not None and r.id_token_hint_sub != s.subject)"
        " or (r.login_hint_sub is not None and r.login_hint_sub != s.subject)",
        "the hinted user", lambda r, s, now: f"session user {s.subject!r}, hinted "
        f"{r.id_token_hint_sub or r.login_hint_sub or r.login_hint!r}",
        RemedyHint("switch_user", (("prompt", "login"),)))


# --- authentication requirements (the policy's on_unmet error) -----------------

def _methods_text(s: Any) -> str:
    return ", ".join(sorted(s.methods)) or "none"


def amr(req: AmrRequirement, error: str, step_up: RemedyHint) -> Check:
    """Return the check for ``require amr any_of|all_of``."""
    methods = frozenset(req.methods)
    listed = ", ".join(req.methods)
    if req.mode == "any_of":
        fails, required = "{0}.isdisjoint(m)", f"amr any of {listed}"
    else:
        fails = " or ".join(f"{{{i + 1}}} not in m" for i in range(len(req.methods)))
        required = f"amr all of {listed}"
    # the step-up hint (acr_values at the lowest level that implies these methods, else the MFA
    # level) only when every method named is a second factor: retrying with it would demand MFA
    # of a policy that asks for a first factor (pwd, wia) alone
    if all(FACTOR_OF_METHOD.get(m) in SECOND_FACTORS for m in req.methods):
        remedy = RemedyHint(step_up.action, step_up.params, req.methods, acr=step_up.acr, solve=True)
    else:
        remedy = RemedyHint("login", (("prompt", "login"),), req.methods, solve=True)
    return Check(
        "amr_missing", f"the session lacks a required authentication method ({req.mode})",
        error, req.span, f"({fails})", required,
        lambda r, s, now: f"session amr {_methods_text(s)}", remedy, (methods, *req.methods))


def mfa(req: MfaRequirement, error: str, step_up: RemedyHint) -> Check:
    """Return the check for ``require mfa``: two distinct factors (RFC 8176 ``mfa``)."""
    return Check(
        "mfa_required", "the session has not combined two distinct factors",
        error, req.span, "not s.mfa", "two distinct factors (mfa)",
        lambda r, s, now: f"session amr {_methods_text(s)} "
        f"(factors: {', '.join(sorted(s.factors)) or 'none'})", step_up)


def step_up(req: MfaRequirement, error: str, hint: RemedyHint) -> Check:
    """Return the freshness check of ``require mfa within D`` (applies once MFA holds)."""
    within = int(req.within or 0)
    return Check(
        "step_up_required", "the second factor is older than the step-up window",
        error, req.span,
        f"s.mfa and (s.second_factor_time is None or now - s.second_factor_time > {within})",
        f"a second factor within {format_duration(within)}",
        lambda r, s, now: ("last second factor "
                           + (f"{human_duration(now - s.second_factor_time)} ago"
                              if s.second_factor_time is not None else "never")),
        dataclasses.replace(hint, params=(*hint.params, ("max_age", str(within)))))


def acr(req: AcrRequirement, reaches: tuple[str, tuple[Any, ...]], acr_rank: AcrRank,
        acr_name: Callable[[int], str], error: str) -> Check:
    """Return the check for ``require acr``: the session reaches at least this level.

    ``reaches`` is the expression (and its consts) true when the session meets
    this level or a higher one, so the check compiles to inline tests.
    """
    expression, consts = reaches
    return Check(
        "acr_insufficient", "the session's assurance level is below the required acr",
        error, req.span, f"not {expression}", f"acr at least {req.level}",
        lambda r, s, now: f"session acr {acr_name(acr_rank(s))}",
        RemedyHint("step_up", (("acr_values", req.level),), acr=req.level), consts)


def essential_acr(span: Span, unmet: Callable[[Any, Any], bool], acr_rank: AcrRank,
                  acr_name: Callable[[int], str], error: str) -> Check:
    """Return the check for acr requested as essential in the ``claims`` parameter."""
    return Check(
        "acr_insufficient", "the session does not reach the essential acr the request asks for",
        error, span, "r.essential_acr and {0}(r, s)", "an essential acr from the claims parameter",
        lambda r, s, now: (f"requested {' '.join(r.essential_acr)}, "
                           f"session acr {acr_name(acr_rank(s))}"),
        RemedyHint("step_up", (("acr_values", ""),), acr=ESSENTIAL_ACR), (unmet,))


def requested_acr(span: Span, unmet: Callable[[Any, Any], bool], acr_rank: AcrRank,
                  acr_name: Callable[[int], str], error: str) -> Check:
    """Return the check for the ``acr_values`` parameter when the tenant enforces it (the default).

    The Transmit SSO seed: a silent sign-in must satisfy what ``acr_values``
    requests; the session must reach at least one requested level (OIDC Core
    §3.1.2.1 lists them in order of preference). ``acr_values: {requested:
    voluntary}`` in tenant.yaml leaves this check out (voluntary claims).
    """
    return Check(
        "acr_insufficient", "the session is below every acr level the request asks for (acr_values)",
        error, span, "r.acr_values and {0}(r, s)", "an acr level from the request's acr_values",
        lambda r, s, now: (f"requested {' '.join((r.step_up_acr,) if r.step_up_acr else r.acr_values)}, "
                           f"session acr {acr_name(acr_rank(s))}"),
        RemedyHint("step_up", (("acr_values", ""),), acr=REQUESTED_ACR), (unmet,))


# --- why a session ended (the store's record, SPEC §2) -------------------------

_ENDED: dict[str, tuple[str, str, str | None]] = {
    # reason: (description, required, the tenant.yaml setting behind it)
    SESSION_EXPIRED: ("the session outlived its lifetime since the last authentication",
                      "at most {limit} since the last authentication", "session.lifetime"),
    ABSOLUTE_LIFETIME_EXCEEDED: ("the session is older than require_login_after",
                                 "at most {limit} since the session was created",
                                 "session.require_login_after"),
    INACTIVITY_TIMEOUT: ("the session was idle longer than the inactivity window",
                         "idle at most {limit}", "session.inactivity"),
    LOGGED_OUT: ("the user logged out", "a live session", None),
    ENDED_BY_ADMIN: ("an administrator ended the user's sessions", "a live session", None),
    PASSWORD_CHANGED: ("the user's password changed, which ends every session", "a live session", None),
    REPLACED_BY_SIGN_IN: ("another user signed in on the same browser", "a live session", None),
    SESSION_LIMIT: ("the user's newer sessions pushed it out (session.max_per_user)", "a live session",
                    "session.max_per_user"),
}


def ended_reason(end: SessionEnd, setting_span: Callable[[str], Span], fallback: Span) -> Reason:
    """Return the reason for a session that has ended: its code, the limit and the time."""
    description, required, setting = _ENDED.get(end.reason, ("the session ended", "a live session", None))
    span = setting_span(setting) if setting else fallback
    when = datetime.fromtimestamp(end.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    observed = f"session ended at {when}"
    if end.limit is not None:
        observed += f" after reaching the {format_duration(end.limit)} limit"
    return Reason(end.reason, required.format(limit=format_duration(end.limit or 0)), observed,
                  f"{span.file}:{span.line}", description)


# --- consent (consent_required) ----------------------------------------------

def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def consent_expires_at(granted_at: int, lifetime: int) -> int:
    """Return the first second at which a grant given at ``granted_at`` no longer counts.

    Limits are inclusive here as everywhere (a session idle exactly its window
    is live): a grant ``lifetime`` seconds old still counts, one second older does not.
    """
    return granted_at + lifetime + 1


def consent(scopes: tuple[str, ...], span: Span, *, requested: bool, lifetime: int | None = None) -> Check:
    """Return the check that the scopes (policy-required, and requested unless first-party) are granted.

    With ``lifetime`` (``require consent … for D``) each of ``scopes`` must also
    have been granted at most that long ago; the policy's current lifetime is
    applied to the recorded grant time, so a shorter one takes effect at reload.
    """
    required = frozenset(scopes)
    fails = "not ({0} <= g" + (" and r.scopes <= g)" if requested else ")")
    consts: tuple[Any, ...] = (required,)
    if lifetime is not None:
        # inline, one test a scope (the {1}, {2}… consts), as hot as the other checks: all are
        # granted here, each at its recorded time or, when none was recorded, at s.created_at
        limit = int(lifetime)
        old = " or ".join(f"now - t.get({{{i + 1}}}, s.created_at) > {limit}" for i in range(len(scopes)))
        fails = (f"({fails} or ((t := s.consent_times.get(r.client_id)) is None"
                 f" and now - s.created_at > {limit}) or (t is not None and ({old or 'False'})))")
        consts = (required, *scopes)
    what = ", ".join(scopes)
    text = (f"granted scopes {what} and every requested scope" if requested and scopes
            else "every requested scope granted" if requested else f"granted scopes {what}")
    if lifetime is not None:
        text += f", each within {format_duration(lifetime)}"

    def observe(r: Any, s: Any, now: int) -> str:
        granted_now = s.consents.get(r.client_id, EMPTY)
        missing = (required | (r.scopes if requested else EMPTY)) - granted_now
        facts = [f"granted {', '.join(sorted(granted_now)) or 'nothing'}"]
        if missing:
            facts.append(f"missing {', '.join(sorted(missing))}")
        if lifetime is not None:
            for scope in sorted(required & granted_now):
                expires = consent_expires_at(s.consent_granted_at(r.client_id, scope), lifetime)
                if now >= expires:
                    facts.append(f"consent for {scope} expired at {_utc(expires)}")
        return "; ".join(facts)

    return Check("consent_missing", "a required or requested scope was not granted to this client",
                 CONSENT_REQUIRED, span, fails, text, observe,
                 RemedyHint("consent", (("prompt", "consent"),), (), scopes), consts)


def prompt_consent(span: Span) -> Check:
    """Return the check that ``prompt=consent`` always asks the user again."""
    return Check("prompt_consent", "the request asks for consent (prompt=consent)",
                 CONSENT_REQUIRED, span, "'consent' in r.prompt", "no prompt=consent",
                 lambda r, s, now: "prompt=consent", RemedyHint("consent", (("prompt", "consent"),)))


def second_factor_methods(enabled: frozenset[str]) -> tuple[str, ...]:
    """Return the enabled methods that count as a second factor (possession or inherence)."""
    return tuple(sorted(m for m in enabled if FACTOR_OF_METHOD.get(m) in SECOND_FACTORS))


def requirement_checks(req: Requirement, *, error: str, step_up_hint: RemedyHint,
                       acr_rank: AcrRank, acr_name: Callable[[int], str],
                       reaches: Callable[[str], tuple[str, tuple[Any, ...]]]) -> list[Check]:
    """Return the checks one requirement compiles to.

    ``step_up_hint`` is the step-up remedy of this requirement when it is an
    amr or MFA one: ``acr_values`` at the lowest level that implies it.
    """
    if isinstance(req, AmrRequirement):
        return [amr(req, error, step_up_hint)]
    if isinstance(req, MfaRequirement):
        checks = [mfa(req, error, step_up_hint)]
        if req.within is not None:
            checks.append(step_up(req, error, step_up_hint))
        return checks
    if isinstance(req, AcrRequirement):
        return [acr(req, reaches(req.level), acr_rank, acr_name, error)]
    if isinstance(req, ConsentRequirement):
        return [consent(req.scopes, req.span, requested=False, lifetime=req.lifetime)]
    raise TypeError(f"unknown requirement {req!r}")
