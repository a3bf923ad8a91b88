"""The authorization endpoint's flow: decide, interact, answer (OIDC Core §3.1.2).

Every request is decided by the client's compiled policy. Under
``prompt=none`` a refusal goes straight back to the client as the decision's
error with its reason codes (OIDC Core §3.1.2.6); otherwise the hosted pages
run until the policy is met (:mod:`policy_sso.oidc.interaction`). The silent
path costs one session read and one evaluation: a code carries its grant sealed
(:mod:`policy_sso.oidc.codes`), and rate-limit permits are leased in blocks.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from policy_sso.config import Client
from policy_sso.decision import Decision
from policy_sso.errors import InvalidRequest, OAuthError, StoreUnavailable
from policy_sso.networks import IPAddress
from policy_sso.oidc import forced_sso, par, pkce, tokens
from policy_sso.oidc.authorize import (
    AuthorizationError,
    AuthorizationRequest,
    AuthorizationResponse,
)
from policy_sso.oidc.claims import requested_claims, subject_value, user_claims
from policy_sso.oidc.codes import CodeGrant
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.interaction import (
    ENROLLABLE_FACTORS,
    Interaction,
    Step,
    counted_session,
    next_step,
    satisfied_request,
)
from policy_sso.oidc.provider import Provider, join_client
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Device, Session


@dataclass(frozen=True, slots=True)
class Answer:
    """The authorization response to deliver now."""

    response: AuthorizationResponse
    session_id: str | None = None  # a session a login_hint_token signed in: the browser's new cookie


@dataclass(frozen=True, slots=True)
class Interact:
    """Send the user to a hosted page (``login`` covers the password and OTP forms)."""

    page: Literal["login", "consent"]
    interaction: Interaction
    session_id: str | None = None


def parse_request(p: Provider, params: Mapping[str, str], now: int, *,
                  client_ip: IPAddress | None = None) -> AuthorizationRequest:
    """Return the validated request, hints resolved; raise InvalidRequest or AuthorizationError.

    ``client_ip`` is the address the request came from (what ``when network in`` tests).
    """

    def resolve_hints(params: Mapping[str, str], client: Client) -> tuple[str | None, str | None]:
        hint_sub = None
        if params.get("id_token_hint"):
            try:
                claims = tokens.verify_id_token_hint(p.keyring, params["id_token_hint"],
                                                     p.issuer, now)
            except Exception:
                raise InvalidRequest("id_token_hint is not a valid ID token of this provider",
                                     error="invalid_request") from None
            aud = claims.get("aud")
            if client.client_id not in ([aud] if isinstance(aud, str) else (aud or [])):
                raise InvalidRequest("id_token_hint was not issued to this client")
            hint_sub = str(claims.get("sub"))
        # OIDC Core §5.5.1: an ID token asked for with a sub value answers for that user only
        hint_sub = hint_sub or subject_value(params.get("claims"))
        login_hint = params.get("login_hint")
        user = p.tenant.resolve_user(login_hint)
        return hint_sub, (user.sub if user else login_hint or None)

    areq = p.request_shapes.validate(params, resolve_hints=resolve_hints,
                                     verify_challenge=_validate_s256_challenge)
    if client_ip is None:
        return areq
    return replace(areq, policy_request=replace(areq.policy_request, client_ip=client_ip))


def _validate_s256_challenge(challenge: str) -> None:
    pkce.validate_challenge(challenge, "S256")


def authorize(p: Provider, params: Mapping[str, str], session_id: str | None,
              now: int, *, address: str = "-", client_ip: IPAddress | None = None,
              device: Callable[[], Device] | None = None) -> Answer | Interact:
    """Return the answer to an authorization request, or the interaction that must run first.

    ``address`` is the client's (server.client_address): silent requests with
    no known session are rate-limited by it. ``client_ip`` is what the policy's
    ``when network in`` tests (None: unknown); ``device`` says where the browser
    is, asked only when a ``login_hint_token`` signs a user in (the session records it).
    """
    # only a PAR request_uri is opened; any other is request_uri_not_supported (OIDC Core §6.2), as the
    # request is validated like one that was not pushed, and discovery says request_uri is not supported
    pushed = params.get("request_uri", "").startswith(par.REQUEST_URI_PREFIX)
    if pushed:  # RFC 9126 §4: the pushed request, spent once; the policy decides it like any other
        params = par.pushed_params(p, params, now)
    areq = parse_request(p, params, now, client_ip=client_ip)
    if not pushed and par.par_required(p, areq.client):
        raise AuthorizationError(InvalidRequest("this client must push its authorization requests to /par"
                                                " (RFC 9126)"), areq.target)
    session = p.store.get_session(session_id, now) if session_id else None
    signed_in = None
    try:
        if areq.policy_request.silent:
            # keyed by the session the store knows, else by address: never by the raw cookie
            p.limiter.check_caller("silent_auth", session.id if session else None, areq.client.client_id,
                                   address, now=now)
        else:  # each interactive request is a page and an audit event: per session and client, else address
            p.limiter.check_caller("authorize", session.id if session else None, areq.client.client_id,
                                   address, now=now)
        token = forced_sso.hint_token(params)
        if token is not None:  # SPEC §5: verified before anything changes
            session = forced_sso.sign_in_with_hint(p, areq.client.client_id, token, session, now,
                                                   device=device() if device else None)
            signed_in = session.id
    except OAuthError as err:  # the redirect_uri is valid by now: the client hears of it
        raise AuthorizationError(err, areq.target) from None
    request = areq.policy_request
    if request.acr_values and not request.silent and session is not None:
        request = step_up_target(p, request, session, now)
    decision = p.tenant.decide(request, session, now)
    p.metrics.decisions.add(areq.client.client_id, decision.outcome)
    if not decision.allowed and request.silent and session is None and session_id:
        decision = ended_decision(p, areq.client.client_id, session_id, now) or decision
    audit_decision(p, areq, session, decision, now)
    if decision.allowed:
        return Answer(issue(p, areq, session, now), signed_in)  # type: ignore[arg-type]
    if request.silent:
        raise AuthorizationError(decision_error(decision), areq.target)
    # the pending interaction never carries the (now spent) hint
    kept = {k: v for k, v in areq.params.items() if k not in forced_sso.HINT_PARAMETERS}
    interaction = p.codec.new(kept, now)
    step = resolve(p, areq, session, interaction, now)
    if step.kind == "fail":
        raise AuthorizationError(decision_error(step.decision), areq.target)
    return Interact("consent" if step.kind == "consent" else "login", interaction, signed_in)


def audit_decision(p: Provider, areq: AuthorizationRequest, session: Session | None, decision: Decision,
                   now: int, **details: object) -> None:
    """Record an authorization decision: outcome, reasons with their policy lines, silent or not."""
    p.audit.decision("authorization.decision", areq.client.client_id, session, decision, now,
                     request=areq.policy_request, users=p.tenant.users, **details)


def ended_decision(p: Provider, client_id: str, session_id: str, now: int) -> Decision | None:
    """Return the refusal naming why the session ``session_id`` ended, while the store remembers."""
    end = p.store.session_end(session_id, now)
    return p.tenant.evaluator(client_id).ended(end) if end is not None else None


def step_up_target(p: Provider, request: AuthRequest, session: Session, now: int) -> AuthRequest:
    """Return the request aiming at the strongest requested acr the user can reach on the hosted pages.

    OIDC Core §3.1.2.1 lists ``acr_values`` in order of preference; like
    Keycloak, the interactive flow steps up to the strongest of them that a
    fresh password and the second factors this user has can reach. When none
    is reachable the request is left as it is (the policy's unmet error follows).
    """
    settings = p.tenant.settings
    if settings.acr_values_requested != "enforced":
        return request  # voluntary claims: nothing to step up to
    ranks = {lvl.id: lvl.rank for lvl in settings.acr_levels}
    trial = session
    for method in ("pwd", *p.second_factors(session.subject)):
        trial = trial.with_event(AuthEvent(method, now), session.id)
    reachable = p.tenant.evaluator(request.client_id).acr_rank(trial)
    candidates = [v for v in request.acr_values if v in ranks and ranks[v] <= reachable]
    if not candidates:
        return request
    return replace(request, step_up_acr=max(candidates, key=ranks.__getitem__))


def store_fault(p: Provider, params: Mapping[str, str], fault: StoreUnavailable,
                now: int) -> AuthorizationError:
    """Return the error that tells the client of a store fault at its verified redirect_uri.

    :func:`parse_request` checks the client and its redirect_uri against the
    registered ones without touching the store, so a request the store failed
    on is validated again here at no store cost (RFC 6749 §4.1.2.1
    ``temporarily_unavailable``, with ``state`` and ``iss``).
    """
    if params.get("request_uri", "").startswith(par.REQUEST_URI_PREFIX):  # the pushed request's, unspent
        params = par.pushed_params(p, params, now, spend=False)
    return AuthorizationError(fault, parse_request(p, params, now).target)


def decision_error(decision: Decision) -> OAuthError:
    """Return the OIDC error for a refusal: the outcome, with the reason codes as description."""
    codes = dict.fromkeys(decision.codes)  # two checks may share a code (policy and requested consent)
    return OAuthError(" ".join(codes) or decision.outcome, error=decision.outcome)


def resolve(p: Provider, areq: AuthorizationRequest, session: Session | None,
            interaction: Interaction, now: int, *, consented: bool = False) -> Step:
    """Return the next step of an interaction for the session as it is now.

    The step judges the session as it counts for the request
    (:func:`counted_session`): after ``prompt=login`` or an exceeded
    ``max_age``, only the factors presented during the interaction.
    """
    session = counted_session(areq.policy_request, session, interaction)
    request = satisfied_request(areq.policy_request, session, interaction, consented)
    if request.acr_values and session is not None:
        request = step_up_target(p, request, session, now)
    decision = p.tenant.decide(request, session, now)
    offered = p.second_factors(session.subject) if session else ()
    # the factors the hosted pages could add but this user lacks: a page explains, or offers enrolment
    lacking = tuple(m for m in ENROLLABLE_FACTORS if m in p.tenant.settings.methods and m not in offered)
    return next_step(decision, session, lambda s: p.tenant.decide(request, s, now), offered, now,
                     lacking=lacking)


def granted_acr(p: Provider, request: AuthRequest, session: Session) -> str | None:
    """Return the ``acr`` a grant states: the strongest level the session meets, or, when the
    ``claims`` parameter asked for ``acr`` as essential with values the session meets, the
    strongest of those (OIDC Core §5.5.1.1: the answer is one of the requested values)."""
    evaluator = p.tenant.evaluator(request.client_id)
    own = evaluator.acr_of(session)
    if not request.essential_acr:
        return own
    ranks = {level.id: level.rank for level in p.tenant.settings.acr_levels}
    reached = evaluator.acr_rank(session)
    met = [value for value in request.essential_acr if value in ranks and ranks[value] <= reached]
    return max(met, key=ranks.__getitem__) if met else own


def issue(p: Provider, areq: AuthorizationRequest, session: Session, now: int) -> AuthorizationResponse:
    """Return the successful authorization response: code and/or tokens, state and iss.

    ``session`` is the session as it counts for the request (an interaction's
    :attr:`Step.session`): the tokens' ``auth_time``, ``acr`` and ``amr`` are
    its. Joins the client to the session (its ``sid``, OIDC Back-Channel Logout
    §2.1) and touches the session only when last-seen is stale.
    """
    client_id = areq.client.client_id
    join = join_client(p, session, client_id, now)
    if now - session.last_seen >= p.store.lifetime.touch_interval:
        p.store.touch_session(session.id, now)
    grant = Grant(session.subject, client_id, " ".join(areq.scopes), session.auth_time,
                  granted_acr(p, areq.policy_request, session), session.amr, join.sid, areq.nonce,
                  areq.claims_request.userinfo, areq.claims_request.id_token, session.second_factor_time)
    settings = p.tenant.settings.tokens
    out: dict[str, str] = {}
    code = None
    if areq.wants_code:
        code = p.codes.seal(CodeGrant(grant, areq.target.redirect_uri, areq.code_challenge,
                                      now + settings.code_lifetime, areq.params.get("dpop_jkt") or None))
        out["code"] = code
    access_token = None
    if areq.wants_access_token:
        access_token = mint_access_token(p, grant, now, secrets.token_urlsafe(16))
        # RFC 6749 §4.2.2: scope is required when it differs from the requested one (a scope no
        # client may ask for is left out of the grant); sent always, as /token does
        out.update(access_token=access_token, token_type="Bearer",  # noqa: S106 - the RFC 6750 type name
                   expires_in=str(settings.access_token_lifetime), scope=grant.scope)
    if areq.wants_id_token:
        extra = None
        if areq.response_type == "id_token":
            # OIDC Core §5.4: no access token to call userinfo with, so the claims ride in the ID token
            user = p.user(session.subject)
            extra = {k: v for k, v in user_claims(user, areq.scopes).items() if k != "sub"} if user else None
        out["id_token"] = mint_id_token(p, grant, now, access_token=access_token, code=code,
                                        extra_claims=extra)
    return areq.target.response(out)


def mint_id_token(p: Provider, grant: Grant, now: int, *, access_token: str | None = None,
                  code: str | None = None, extra_claims: dict | None = None) -> str:
    """Return an ID token for a grant, signed with the client's algorithm (OIDC Core §2)."""
    client = p.client(grant.client_id)
    alg = p.id_token_alg(client) if client else "RS256"
    if grant.id_token_claims:  # OIDC Core §5.5: the claims parameter's id_token member
        user = p.user(grant.subject)
        if user is not None:
            extra_claims = {**requested_claims(user, grant.id_token_claims), **(extra_claims or {})}
    return tokens.mint_id_token(
        p.keyring, issuer=p.issuer, subject=grant.subject, audience=grant.client_id,
        auth_time=grant.auth_time, nonce=grant.nonce, acr=grant.acr, amr=list(grant.amr),
        sid=grant.sid, now=now, lifetime=p.tenant.settings.tokens.id_token_lifetime, alg=alg,
        access_token=access_token, code=code, extra_claims=extra_claims)


def mint_access_token(p: Provider, grant: Grant, now: int, jti: str, jkt: str | None = None) -> str:
    """Return an RFC 9068 JWT access token for a grant; ``jkt`` binds it to a DPoP key (RFC 9449 §6)."""
    return tokens.mint_access_token(
        p.keyring, issuer=p.issuer, subject=grant.subject, client_id=grant.client_id,
        scope=grant.scope, now=now, lifetime=p.tenant.settings.tokens.access_token_lifetime,
        jti=jti, auth_time=grant.auth_time, acr=grant.acr, amr=list(grant.amr) or None,
        sid=grant.sid, userinfo_claims=grant.userinfo_claims, jkt=jkt,
        second_factor_time=grant.second_factor_time)
