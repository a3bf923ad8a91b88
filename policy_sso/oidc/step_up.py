"""Step-up at the API (RFC 9470): may this access token perform an operation that needs these scopes?

A resource server asks with the token and the scopes (or the resource) an
operation needs; the token's client's policy answers, ``when scope has …``
blocks included, judged against the token's authentication context: its
``amr``, ``auth_time`` and (through the methods) ``acr`` (RFC 9470 §6.1,
RFC 9068 §2.2.1). A refusal carries the RFC 9470 §3 challenge::

    Bearer error="insufficient_user_authentication", error_description="acr_insufficient mfa_required",
        acr_values="urn:policy-sso:loa:2", max_age="300"

with the same reasons (codes and policy source lines) and remedy as every
other decision. The evaluator is the client's compiled policy
(:meth:`policy_sso.tenant.Tenant.token_evaluator`), its check table kept to
:data:`TOKEN_CHECKS`:

- applied: ``require amr``, ``require mfa``, ``require mfa within D``,
  ``require acr``, the policy's ``max_auth_age`` and the caller's own
  ``acr_values`` and ``max_age``;
- not applied: session lifetimes and the inactivity window (a token has its
  own ``exp``; a refreshed token keeps the original authentication and
  legitimately outlives the session), consent (granted when the token was
  issued), ``prompt``, hints and single sign-on being off (they describe an
  authorization request, not a token).

A token records one authentication event: each method of its ``amr`` at its
``auth_time`` (RFC 9470 §4: the time "when the user authentication took
place"), so ``require mfa within D`` holds when the token shows two factors
and ``auth_time`` is at most D old. A token without ``auth_time`` (a
``client_credentials`` token) has no user authentication behind it and is
refused with ``no_session``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from policy_sso.checks import Check
from policy_sso.config import Client
from policy_sso.decision import LOGIN_REQUIRED, Decision, Reason, Remedy
from policy_sso.errors import InvalidClient, InvalidRequest, InvalidToken
from policy_sso.networks import IPAddress
from policy_sso.networks import client_ip as parse_client_ip
from policy_sso.oidc.tokens import SECOND_FACTOR_TIME
from policy_sso.request import AuthRequest, parameter_member, parse_int
from policy_sso.sessions.model import FACTOR_OF_METHOD, SECOND_FACTORS, AuthEvent, Session

if TYPE_CHECKING:
    from policy_sso.compile import CompiledPolicy
    from policy_sso.oidc.provider import Provider
    from policy_sso.tenant import Tenant

# The reason codes whose checks judge a token's authentication context (see the module docstring).
TOKEN_CHECKS = frozenset({"amr_missing", "mfa_required", "step_up_required", "acr_insufficient",
                          "max_age_exceeded"})
INSUFFICIENT_USER_AUTHENTICATION = "insufficient_user_authentication"  # RFC 9470 §3
INSUFFICIENT_SCOPE = "insufficient_scope"  # RFC 6750 §3.1
INVALID_TOKEN = "invalid_token"  # noqa: S105 - RFC 6750 §3.1 error code, not a secret
# The status a resource server answers each error with (RFC 6750 §3.1, RFC 9470 §3).
STATUS = {INSUFFICIENT_USER_AUTHENTICATION: 401, INVALID_TOKEN: 401, INSUFFICIENT_SCOPE: 403}


def applies_to_token(check: Check) -> bool:
    """Return whether a compiled check judges an access token's authentication context."""
    return check.reason in TOKEN_CHECKS


@dataclass(frozen=True)
class ApiDecision:
    """The answer to a resource server: allow, or the challenge, reasons and remedy of a refusal."""

    allow: bool
    error: str | None = None
    www_authenticate: str | None = None
    decision: Decision | None = field(default=None, repr=False)
    remedy: Remedy | None = None

    @property
    def status(self) -> int:
        """Return the HTTP status the resource server answers a refusal with (200 when allowed)."""
        return 200 if self.allow else STATUS.get(self.error or "", 401)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Return the failed checks behind a refusal (none for invalid_token or insufficient_scope)."""
        return self.decision.reasons if self.decision is not None else ()

    def to_json(self) -> dict[str, Any]:
        """Return the answer as documented in docs/api-step-up.md."""
        if self.allow:
            return {"allow": True}
        return {"allow": False, "error": self.error, "status": self.status,
                "www_authenticate": self.www_authenticate,
                "reasons": [r.to_json() for r in self.reasons],
                "remedy": self.remedy.to_json() if self.remedy else None}


def challenge(error: str, description: str, *, dpop_algs: tuple[str, ...] | None = None,
              **params: str | None) -> str:
    """Return a WWW-Authenticate challenge: ``Bearer`` (RFC 6750 §3), or ``DPoP`` for a bound token.

    ``dpop_algs`` names the DPoP proof algorithms (RFC 9449 §7.1: a bound
    token is challenged with the DPoP scheme); ``params`` are further
    auth-params (``acr_values``, ``max_age``, ``scope``), left out when None.
    """
    parts = [f'DPoP algs="{" ".join(dpop_algs)}"' if dpop_algs is not None else "Bearer"]
    values = {"error": error, "error_description": description, **params}
    parts.append(", ".join(f'{k}="{_quotable(v)}"' for k, v in values.items() if v is not None))
    return (" " if dpop_algs is None else ", ").join(parts)


def _quotable(value: str) -> str:
    """Return ``value`` fit for a quoted-string (RFC 9110 §5.6.4) and a header line.

    Values may come from the resource server's question (its scopes and
    acr_values): quotes and backslashes would end or escape the string, and a
    control character (CR, LF) would end the header the resource server sends.
    """
    return "".join("'" if c == '"' else "/" if c == "\\" else " " if c < " " else "?" if c > "~" else c
                   for c in value)  # past "~": DEL and non-ASCII, not for a header line (RFC 9110 §5.5)


def token_session(claims: Mapping[str, Any], now: int) -> Session | None:
    """Return the authentication behind a token as a session: its ``amr`` methods, each at its time.

    A second factor (possession, inherence) at the token's ``second_factor_time``
    (when it was last presented; at the epoch when the token does not say,
    so ``require mfa within`` fails closed), every other method at
    ``auth_time``. None when the token has no ``auth_time`` (no user
    authentication behind it). ``mfa`` in ``amr`` is not an event: the session
    derives it from the factors.
    """
    auth_time = claims.get("auth_time")
    if not _is_int(auth_time):
        return None
    second = claims.get(SECOND_FACTOR_TIME)
    second_time = second if _is_int(second) and second <= auth_time else 0
    amr = claims.get("amr")
    methods = [m for m in amr if isinstance(m, str) and m != "mfa"] if isinstance(amr, list) else []
    events = tuple(AuthEvent(m, second_time if FACTOR_OF_METHOD.get(m) in SECOND_FACTORS else auth_time)
                   for m in dict.fromkeys(methods))
    return Session(id=f"token:{claims.get('jti')}", subject=str(claims.get("sub")), created_at=auth_time,
                   last_seen=now, events=events, created_for=str(claims.get("client_id")))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scopes(scope: str | Iterable[str] | None) -> frozenset[str]:
    if scope is None:
        return frozenset()
    return frozenset(scope.split() if isinstance(scope, str) else scope)


def invalid_token(description: str, *, dpop_algs: tuple[str, ...] | None = None) -> ApiDecision:
    """Return the refusal of a token that is not valid here (RFC 6750 §3.1 ``invalid_token``)."""
    return ApiDecision(False, INVALID_TOKEN, challenge(INVALID_TOKEN, description, dpop_algs=dpop_algs))


def api_decision(source: Tenant | Provider, claims: Mapping[str, Any], *, now: int,
                 scope: str | Iterable[str] | None = None, resource: str | None = None,
                 acr_values: Iterable[str] = (), max_age: int | None = None,
                 client_ip: IPAddress | None = None) -> ApiDecision:
    """Return whether a verified access token may perform an operation needing ``scope`` (RFC 9470).

    For resource servers that verify tokens themselves (signature, ``iss``,
    ``exp``, and a DPoP proof when the token has ``cnf``): pass the tenant
    (``policy_sso.load_tenant(directory)``) or a Provider, the token's claims
    and what the operation needs: ``scope`` (a space-separated string or an
    iterable; the ``when scope has`` blocks see these scopes) and/or
    ``resource`` (the token's ``aud`` must name it; the policy then sees the
    token's own scopes). ``acr_values`` and ``max_age`` are the operation's
    own demands, judged like the request parameters of the same name.
    ``client_ip`` is the user's address, for ``when network in`` blocks
    (None: unknown, and every network block applies).

    The policy is judged first, so a token that lacks both a scope and the
    authentication is answered with the RFC 9470 challenge, its remedy naming
    the scope to ask for as well; a token whose authentication suffices but
    lacks a needed scope is ``insufficient_scope`` (RFC 6750 §3.1).
    """
    tenant: Tenant = getattr(source, "tenant", source)  # a Provider serves its tenant in force
    dpop_algs = tenant.settings.dpop.algorithms if isinstance(claims.get("cnf"), dict) else None
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or not tenant.governs(client_id):
        return invalid_token("the access token's client is not registered here", dpop_algs=dpop_algs)
    held = _scopes(claims.get("scope") if isinstance(claims.get("scope"), str) else None)
    needed = _scopes(scope)
    if resource is not None:
        aud = claims.get("aud")
        if resource not in ([aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []):
            # RFC 9068 §4: a resource server refuses a token whose aud does not name it
            return invalid_token("the access token is not meant for this resource", dpop_algs=dpop_algs)
    request = AuthRequest(client_id, scopes=needed or held, acr_values=tuple(acr_values), max_age=max_age,
                          client_ip=client_ip)
    session = token_session(claims, now)
    compiled = tenant.token_evaluator(client_id)
    decision = (compiled.decide(request, session, now) if session is not None
                else _no_user(compiled.policy.name, str(compiled.policy.span)))
    missing = needed - held
    client = tenant.clients[client_id]
    # a retry asks for what the token's client may ask for (clients.yaml scopes); anything else
    # /authorize refuses with invalid_scope or ignores (OIDC Core §3.1.2.1), so no retry helps
    retry_scope = " ".join(sorted(needed | (held & frozenset(client.scopes))))
    unobtainable = out_of_reach_remedy(tenant, client, missing)
    if not decision.allowed:
        remedy = decision.remedy
        if unobtainable is not None:
            remedy = unobtainable  # a step-up alone would end in insufficient_scope
        elif remedy is not None and missing:
            # the retry must ask for the scope too, or the new token still cannot do the operation
            remedy = Remedy(remedy.action, remedy.message, {**remedy.params, "scope": retry_scope},
                            remedy.methods, remedy.scopes)
        # the challenge names what the policy asks, whatever the remedy
        params = decision.remedy.params if decision.remedy is not None else {}
        limit = _max_age(compiled, decision, request, session, remedy_max_age=params.get("max_age"), now=now)
        # the operation's own acr_values, when the policy's remedy names no level of its own
        asked = " ".join(request.acr_values) if "acr_insufficient" in decision.codes else ""
        acr = params.get("acr_values") or asked or None
        text = challenge(INSUFFICIENT_USER_AUTHENTICATION, " ".join(dict.fromkeys(decision.codes)),
                         dpop_algs=dpop_algs, acr_values=acr,
                         max_age=str(limit) if limit is not None else None)
        return ApiDecision(False, INSUFFICIENT_USER_AUTHENTICATION, text, decision, remedy)
    if missing:
        listed = " ".join(sorted(missing))
        remedy = unobtainable or Remedy(
            "authorize", f"Retry the authorization request with scope={retry_scope}", {"scope": retry_scope},
            (), tuple(sorted(missing)))
        return ApiDecision(False, INSUFFICIENT_SCOPE,
                           challenge(INSUFFICIENT_SCOPE, f"the access token lacks the scope {listed}",
                                     dpop_algs=dpop_algs, scope=listed), None, remedy)
    return ApiDecision(True)


def out_of_reach_remedy(tenant: Tenant, client: Client, missing: Iterable[str]) -> Remedy | None:
    """Return the remedy when ``client`` may not ask for a ``missing`` scope, or None when it may ask for all.

    Retrying the authorization request would end in ``invalid_scope``
    (RFC 6749 §4.1.2.1), so the remedy names the clients that may ask for
    it, or says that the client's ``scopes`` in clients.yaml must allow it.
    """
    refused = sorted(s for s in missing if s not in client.scopes)
    if not refused:
        return None
    listed = " ".join(refused)
    others = sorted(c.client_id for c in tenant.clients.values()
                    if c.client_id != client.client_id and all(s in c.scopes for s in refused))
    where = (f"only a token of a client that may ask for it ({', '.join(others)}) carries it"
             if others else "no client may ask for it")
    return Remedy("unavailable", f"{client.client_id} may not ask for scope {listed} (its scopes in "
                  f"clients.yaml), so retrying its authorization request cannot obtain it: {where}, "
                  f"unless {client.client_id}'s scopes are changed to allow it", {}, (), tuple(refused))


def _binding_refusal(claims: Mapping[str, Any], token_type: str | None, dpop_jkt: str | None) -> str | None:
    """Return why a DPoP-bound token may not be used as it was presented, or None when it may.

    RFC 9449 §7.1: a token with ``cnf.jkt`` is used only with the DPoP scheme
    and a proof by that key. The resource server checked the proof it was
    sent (it was addressed to the resource server, not to us) and passes its
    key's thumbprint as ``dpop_jkt``; a bound token asked about as a Bearer
    token, or with another key's thumbprint, is refused here as well.
    """
    cnf = claims.get("cnf")
    bound = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(bound, str):
        return None
    if token_type != "DPoP":  # noqa: S105 - a scheme name, not a secret
        return "the access token is DPoP-bound: it goes with the DPoP scheme and a proof, not as Bearer"
    if dpop_jkt is None or not hmac.compare_digest(dpop_jkt.encode(), bound.encode()):
        return "the access token is bound to another key than the DPoP proof's (dpop_jkt)"
    return None


def resource_server_question(p: Provider, client: Client, body: Mapping[str, Any],
                             now: int) -> dict[str, Any]:
    """Return the answer of ``POST /v1/auth/api-decision`` for an authenticated resource server.

    ``body``: ``token`` (the access token the resource server was shown),
    ``scope`` (space-separated) and/or ``resource``, and optionally the
    operation's own ``acr_values`` and ``max_age``. A token that is not valid
    here (bad signature, expired, revoked, another issuer's) is answered
    ``invalid_token`` with its challenge, as introspection answers
    ``active: false``: the question was well asked, the token is the problem.
    """
    if client.is_public:
        # like introspection (RFC 7662 §4): a resource server proves who it is with a secret
        raise InvalidClient("a resource server authenticates with its client secret")
    token, scope, resource, acr_values, max_age, token_type, dpop_jkt, address = (
        parameter_member(body, name) for name in ("token", "scope", "resource", "acr_values", "max_age",
                                                  "token_type", "dpop_jkt", "client_ip"))
    if token is None:
        raise InvalidRequest("token is required")
    if token_type not in (None, "Bearer", "DPoP"):
        raise InvalidRequest("token_type is the scheme the token came with: Bearer or DPoP")
    if scope is None and resource is None:
        raise InvalidRequest("scope or resource is required: what the operation needs")
    limit = parse_int(max_age, "max_age") if max_age is not None else None
    # The user's address as the resource server saw it: the answer is advice to that same server, which
    # gains nothing by misstating it. Absent, the address is unknown and every network block applies.
    user_ip = parse_client_ip(address) if address is not None else None
    if address is not None and user_ip is None:
        raise InvalidRequest("client_ip must be an IPv4 or IPv6 address")
    # imported here: api_decision is public (policy_sso.__all__) and must not load the provider
    from policy_sso.oidc.userinfo import verify_bearer

    try:
        claims = verify_bearer(p, token, now)
    except InvalidToken as err:
        p.audit.record("api.decision", now, outcome=INVALID_TOKEN, resource_server=client.client_id)
        return invalid_token(err.description).to_json()
    unbound = _binding_refusal(claims, token_type, dpop_jkt)
    if unbound is not None:
        p.audit.record("api.decision", now, outcome=INVALID_TOKEN, client=str(claims.get("client_id")),
                       subject=str(claims.get("sub")), resource_server=client.client_id)
        return invalid_token(unbound, dpop_algs=p.tenant.settings.dpop.algorithms).to_json()
    answer = api_decision(p, claims, now=now, scope=scope, resource=resource,
                          acr_values=(acr_values or "").split(), max_age=limit, client_ip=user_ip)
    outcome = "allow" if answer.allow else answer.decision.outcome if answer.decision else str(answer.error)
    if answer.allow or answer.decision is not None:  # the policy decided (counted under the token's client)
        p.metrics.decisions.add(str(claims["client_id"]), outcome)
    policy = {"policy": answer.decision.policy} if answer.decision else {}
    p.audit.record("api.decision", now, outcome=outcome, client=str(claims["client_id"]),
                   subject=str(claims.get("sub")), reasons=answer.reasons, resource_server=client.client_id,
                   scopes=sorted(_scopes(scope)), **policy)
    return answer.to_json()


def _no_user(policy: str, source: str) -> Decision:
    """Return the refusal of a token with no user authentication behind it (no ``auth_time``)."""
    reason = Reason("no_session", "a user authentication behind the access token",
                    "the token has no auth_time (a client_credentials token)", source,
                    "the access token carries no user authentication")
    return Decision(LOGIN_REQUIRED, (reason,),
                    Remedy("login", "Obtain a token through the authorization endpoint, where the user "
                                    "signs in", {}), policy)


def _max_age(compiled: CompiledPolicy, decision: Decision, request: AuthRequest, session: Session | None,
             *, remedy_max_age: str | None, now: int) -> int | None:
    """Return the challenge's ``max_age``: the tightest time limit among the failed checks (RFC 9470 §3).

    A step-up window (``require mfa within D``) that failed gives D. When MFA
    itself is missing, the evaluator is asked once more about the same token
    with an ancient second factor: a step-up window that then fails applies to
    this operation, so the retry's second factor must be that fresh too. A
    ``max_age_exceeded`` gives the limit it exceeded: the operation's
    ``max_age`` or the policy's ``max_auth_age``.
    """
    limits = [int(remedy_max_age)] if remedy_max_age is not None else []
    if "mfa_required" in decision.codes and session is not None:
        ancient = (*(AuthEvent(m, 0) for m in session.methods), AuthEvent("pwd", 0), AuthEvent("otp", 0))
        probe = compiled.decide(request, replace(session, events=ancient), now)
        window = probe.remedy.params.get("max_age") if probe.remedy is not None else None
        if "step_up_required" in probe.codes and window is not None:
            limits.append(int(window))
    if "max_age_exceeded" in decision.codes and session is not None:
        elapsed = now - session.auth_time
        if request.max_age is not None and (request.max_age == 0 or elapsed > request.max_age):
            limits.append(request.max_age)
        policy_limit = compiled.policy.session.max_auth_age
        if policy_limit and elapsed > policy_limit:
            limits.append(int(policy_limit))
    return min(limits, default=None)
