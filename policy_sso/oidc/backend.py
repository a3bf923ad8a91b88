"""The backend session API (SPEC §4; the Transmit backend-SSO seed): apps sign users in by session id.

Every call is authenticated by a client access token from the
``client_credentials`` grant. ``/v1/auth/session/authenticate`` is silent
authentication without a browser: the calling client's policy decides on the
session, and a refusal carries the decision itself (outcome, every reason,
the remedy) instead of a bare ``login_required``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from policy_sso.config import Client
from policy_sso.decision import Decision
from policy_sso.errors import InvalidClient, InvalidRequest, InvalidToken, OAuthError
from policy_sso.networks import IPAddress
from policy_sso.oidc.authorization_flow import granted_acr, mint_access_token, mint_id_token
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.provider import Provider, end_session, join_client
from policy_sso.oidc.sign_in import sign_in_otp, sign_in_password
from policy_sso.oidc.userinfo import resource_token
from policy_sso.request import AuthRequest, parameter_member
from policy_sso.sessions.model import Session, SessionEnd
from policy_sso.sessions.store import REVOKED_ACCESS_TOKENS

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # what new_session_id makes, and no more


class SessionNotFound(OAuthError):
    """The seed's answer for an unknown, ended or expired session id.

    While the store remembers why the session ended, the body says so as well
    (SPEC §2): ``reason`` (the code), ``ended_at``, ``limit`` for an expiry, and
    ``reasons``/``remedy`` as in a decision. The seed's members stay as they were.
    """

    error = "session_not_found"
    status = 400

    def __init__(self, ended: Decision | None = None, end: SessionEnd | None = None) -> None:
        extra: dict[str, Any] = {"message": "Session not found"}
        self.decision = ended if end is not None else None
        if ended is not None and end is not None:
            extra["reason"] = end.reason
            extra["ended_at"] = end.at
            if end.limit is not None:
                extra["limit"] = end.limit
            decision = ended.to_json()
            extra["reasons"], extra["remedy"] = decision["reasons"], decision["remedy"]
        super().__init__("Session not found", extra=extra)


class Refused(OAuthError):
    """A policy refusal: 400 with the decision's outcome, reasons and remedy."""

    def __init__(self, decision_json: dict[str, Any], codes: tuple[str, ...]) -> None:
        super().__init__(" ".join(codes) or decision_json["outcome"], error=decision_json["outcome"],
                         extra=decision_json)


def _string(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    return value


def _session_id(body: Mapping[str, Any]) -> str:
    """Return the body's session_id; a malformed one is invalid_request, an unknown one not found."""
    value = _string(body, "session_id")
    if not SESSION_ID_RE.match(value):  # type: ignore[arg-type]
        raise InvalidRequest("session_id is malformed")
    return value  # type: ignore[return-value]


def calling_client(p: Provider, *, authorization: str | None, proof: str | None, method: str, path: str,
                   now: int) -> Client:
    """Return the client whose ``client_credentials`` access token a backend API request presents.

    ``Authorization: Bearer``, or ``DPoP`` with ``proof`` (the DPoP header)
    made for this request; a DPoP-bound token presented as a Bearer token is
    refused (RFC 9449 §7.1, §7.2). Raise InvalidToken.
    """
    claims = resource_token(p, authorization=authorization, form_token=None, proof=proof, method=method,
                            url=p.issuer + path, now=now)
    client = p.client(str(claims.get("client_id")))
    if client is None or claims.get("sub") != client.client_id:
        err = InvalidToken("a client access token (client_credentials grant) is required")
        err.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        raise err
    return client


def _live(p: Provider, session_id: str, now: int, client: Client | None = None) -> Session:
    session = p.store.get_session(session_id, now)
    if session is None:
        end = p.store.session_end(session_id, now) if client is not None else None
        if end is None:
            raise SessionNotFound()
        raise SessionNotFound(p.tenant.evaluator(client.client_id).ended(end), end)  # type: ignore[union-attr]
    return session


def _decide(p: Provider, client: Client, session: Session, request: AuthRequest,
            now: int) -> dict[str, Any]:
    """Return tokens when the client's policy allows the session for ``request``; raise Refused otherwise."""
    if not set(request.scopes) <= set(client.scopes):
        raise OAuthError("scope is not allowed for this client", error="invalid_scope")
    if client.first_party and not request.scopes <= session.consents.get(client.client_id, frozenset()):
        # a first-party app needs no consent page: its sign-in grants what it asks for
        session = p.store.grant_consent(session.id, client.client_id, request.scopes, now) or session
    decision = p.tenant.decide(request, session, now)
    p.metrics.decisions.add(client.client_id, decision.outcome)
    p.audit.decision("backend.session_authenticate", client.client_id, session, decision, now,
                     request=request)
    if not decision.allowed:
        body_json = decision.to_json()
        remedy = body_json.get("remedy") or {}
        if "otp" in remedy.get("methods", ()):
            remedy["backend"] = "POST /v1/auth/otp with this session_id and the user's TOTP code"
        raise Refused(body_json, decision.codes)
    join = join_client(p, session, client.client_id, now)
    if now - session.last_seen >= p.store.lifetime.touch_interval:
        p.store.touch_session(session.id, now)
    grant = Grant(session.subject, client.client_id, " ".join(sorted(request.scopes)), session.auth_time,
                  granted_acr(p, request, session), session.amr, join.sid, None,
                  second_factor_time=session.second_factor_time)
    settings = p.tenant.settings.tokens
    access_token = mint_access_token(p, grant, now, secrets.token_urlsafe(16))
    out: dict[str, Any] = {"session_id": session.id, "access_token": access_token, "token_type": "Bearer",
                           "expires_in": settings.access_token_lifetime, "scope": grant.scope}
    if "openid" in request.scopes:
        out["id_token"] = mint_id_token(p, grant, now, access_token=access_token)
    return out


def _request(client: Client, body: Mapping[str, Any], client_ip: IPAddress | None) -> AuthRequest:
    """Return the authorization request a JSON body makes; raise InvalidRequest for a malformed one."""
    scope = _string(body, "scope", required=False) or "openid"
    params = {"scope": scope, **{k: v for k in ("acr_values", "max_age", "claims")
                                 if (v := parameter_member(body, k)) is not None}}
    return AuthRequest.from_params(client.client_id, params, client_ip=client_ip)


def password(p: Provider, client: Client, body: Mapping[str, Any], now: int, *,
             address: str = "-", client_ip: IPAddress | None = None) -> dict[str, Any]:
    """POST /v1/auth/password: a new session, with tokens when the policy allows, else the decision."""
    username, secret = _string(body, "username"), _string(body, "password")
    # read first: a malformed request signs nobody in. The password checked in this very call meets any
    # max_age (OIDC Core §3.1.2.1: max_age=0 asks for an active authentication, as /authorize counts its
    # own sign-in)
    request = replace(_request(client, body, client_ip), max_age=None)
    attempt = sign_in_password(p, None, username, secret, now,  # type: ignore[arg-type]
                               client_id=client.client_id, address=address)
    if attempt.session_id is None:
        raise InvalidClient("wrong username or password", error="invalid_grant", status=400)
    session = _live(p, attempt.session_id, now)
    try:
        return _decide(p, client, session, request, now)
    except Refused as refused:
        # the password was right, so the user is signed in; the policy wants more before tokens
        return {"session_id": session.id, "decision": refused.extra}


def otp(p: Provider, client: Client, body: Mapping[str, Any], now: int, *,
        address: str = "-") -> dict[str, Any]:
    """POST /v1/auth/otp: add a TOTP second factor to a session (new session id: no fixation)."""
    session = _live(p, _session_id(body), now, client)
    attempt = sign_in_otp(p, session, _string(body, "code") or "", now, address, client_id=client.client_id)
    if attempt.session_id is None:
        raise OAuthError(attempt.message or "the code is not valid", error="invalid_grant")
    moved = _live(p, attempt.session_id, now)
    return {"session_id": moved.id, "amr": list(moved.amr)}


def authenticate(p: Provider, client: Client, body: Mapping[str, Any], now: int, *,
                 client_ip: IPAddress | None = None) -> dict[str, Any]:
    """POST /v1/auth/session/authenticate: silent authentication by session id (from ``client_ip``)."""
    session_id = _session_id(body)
    known = p.store.get_session(session_id, now)
    # the client is authenticated; an id the store does not know counts against the client, not the id
    p.limiter.check("silent_auth", session_id if known else "-", client.client_id, now=now)
    if known is None:
        try:
            known = _live(p, session_id, now, client)
        except SessionNotFound as missing:  # on record too: "why could alice not get in"
            _audit_missing(p, client, missing, now)
            raise
    return _decide(p, client, known, _request(client, body, client_ip), now)


def _audit_missing(p: Provider, client: Client, missing: SessionNotFound, now: int) -> None:
    """Record a session authenticate refused for want of a live session (with why it ended, if known)."""
    decision = missing.decision
    if decision is None:  # the policy's own no_session decision, with its source
        decision = p.tenant.decide(AuthRequest.from_params(client.client_id, {"scope": "openid"}), None, now)
    p.audit.decision("backend.session_authenticate", client.client_id, None, decision, now)


def session_logout(p: Provider, body: Mapping[str, Any], now: int, client: Client | None = None) -> None:
    """POST /v1/auth/session/logout: end a session by id (idempotent); ``client``, the app that asks."""
    end_session(p, _session_id(body), now, client=client.client_id if client is not None else None)


USER_LOGOUT_PATH = "/v1/auth/logout"


def user_logout(p: Provider, authorization: str | None, proof: str | None, now: int) -> None:
    """POST /v1/auth/logout: end the session the user's access token was issued from, and revoke it.

    The token comes as ``Authorization: Bearer``, or ``DPoP`` with ``proof``
    (the DPoP header) made for this request; a DPoP-bound token presented as
    a Bearer token is refused, as at /userinfo (RFC 9449 §7.1, §7.2).
    """
    claims = resource_token(p, authorization=authorization, form_token=None, proof=proof, method="POST",
                            url=p.issuer + USER_LOGOUT_PATH, now=now)
    subject, sid, client_id = claims.get("sub"), claims.get("sid"), claims.get("client_id")
    if sid is None or subject == client_id:
        raise InvalidToken("a user's access token is required (this one names no session)")
    for session in p.store.sessions_of(str(subject), now):
        join = session.clients.get(str(client_id))
        if join is not None and join.sid == sid:
            end_session(p, session.id, now, client=str(client_id))  # the app the token was issued to
    p.store.use_jti(REVOKED_ACCESS_TOKENS, str(claims["jti"]), int(claims["exp"]) + 1, now=now)


def session_status(p: Provider, session_id: str | None, client_id: str, now: int, *,
                   address: str = "-") -> dict[str, Any]:
    """GET /v1/auth/session/status: whether the browser's IdP session is alive (for polling).

    Limited per known session and registered client, else per client
    ``address``: neither the cookie nor the client_id is trusted as a key.
    """
    session = p.store.get_session(session_id, now) if session_id else None
    p.limiter.check_caller("status", session.id if session else None,
                           client_id if p.client(client_id) is not None else None, address, now=now)
    if session is None:
        end = p.store.session_end(session_id, now) if session_id else None
        return {"active": False, **({"reason": end.reason, "ended_at": end.at} if end else {})}
    return {"active": True, "expires_at": p.store.lifetime.expires_at(session) - 1,
            "auth_time": session.auth_time}
