"""Forced SSO from a trusted application: sign a user in with a login_hint_token (SPEC §5).

A client whose policy trusts an issuer may pass ``login_hint_token`` (or the
legacy ``sso_token``, as the Authway seed still accepts) to ``/authorize``,
following OIDC Core §4 (third-party initiated login). The token is verified
before anything changes; a valid one signs its user in with the issuer's
declared ``amr``. If another user holds the browser's session, that session
ends first (with back-channel logout) and the hinted user gets a new one.
The client's policy then decides as for any session: a hint that proves
``wia`` does not satisfy a policy that requires MFA.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from policy_sso.errors import InvalidRequest, OAuthError, PolicySSOError
from policy_sso.oidc.hint_token import HintResult, HintVerifier
from policy_sso.oidc.provider import Provider, end_session, reusable_for, start_session
from policy_sso.sessions.model import (
    REPLACED_BY_SIGN_IN,
    AuthEvent,
    Device,
    Session,
    new_session,
    new_session_id,
)

HINT_PARAMETERS = ("login_hint_token", "sso_token")
HINT_FACTOR = "login_hint_token"  # details.factor of its sign_in.* events; details.amr holds what it proves

log = logging.getLogger("policy_sso.forced_sso")


def hint_token(params: Mapping[str, str]) -> str | None:
    """Return the login_hint_token a request carries, under either name; reject both at once."""
    given = [params[name] for name in HINT_PARAMETERS if params.get(name)]
    if len(given) > 1:
        raise InvalidRequest("send login_hint_token or sso_token, not both")
    return given[0] if given else None


def verifier_for(p: Provider, client_id: str) -> HintVerifier:
    """Return the (cached) verifier of the issuers the client's policy trusts."""
    tenant = p.tenant
    policy = tenant.policy_for(client_id)
    cache = p.hint_verifiers
    key = (id(tenant), policy.name)
    verifier = cache.get(key)
    if verifier is None:
        try:
            verifier = HintVerifier(policy.trust, tenant.directory, tenant.settings.issuer,
                                    tenant.settings.clock_skew)
        except PolicySSOError:  # e.g. the key's environment variable is unset on this instance
            log.error("login_hint_token: a key of policy %r is unavailable", policy.name)
            raise OAuthError("the trusted issuer's key is not available on this server",
                             error="server_error", status=503) from None
        if len(cache) > 256:
            cache.clear()
        cache[key] = verifier
    return verifier


def sign_in_with_hint(p: Provider, client_id: str, token: str, current: Session | None,
                      now: int, *, device: Device | None = None) -> Session:
    """Return the session a valid hint signs in; raise InvalidRequest and change nothing otherwise.

    ``device``: where the browser is, recorded in the session (the account page shows it).
    Both outcomes are on record (SPEC §7): ``sign_in.success`` with the issuer
    and the methods it vouches for, or ``sign_in.failure`` with the check that
    refused it; never the token.
    """
    try:
        result = verifier_for(p, client_id).verify(token, now=now, store=p.store,
                                                   user_exists=lambda sub: p.user(sub) is not None)
    except OAuthError as err:
        failure = "issuer_key_unavailable" if err.error == "server_error" else "invalid_hint_token"
        p.audit.record("sign_in.failure", now, outcome="failure", client=client_id, factor=HINT_FACTOR,
                       failure=failure, description=err.description)  # the check that refused it
        raise
    session = _signed_in(p, client_id, result, current, now, device=device)
    p.audit.record("sign_in.success", now, outcome="success", client=client_id, subject=result.subject,
                   session_id=session.id, factor=HINT_FACTOR, issuer=result.issuer, amr=list(result.amr))
    return session


def _signed_in(p: Provider, client_id: str, result: HintResult, current: Session | None, now: int, *,
               device: Device | None) -> Session:
    """Return ``current`` re-authenticated with the hint's amr when it is its user's, else a new session."""
    subject = result.subject
    events = tuple(AuthEvent(method, now) for method in result.amr)
    if current is not None and current.subject == subject and reusable_for(p, current, client_id):
        session: Session | None = current
        for event in events:  # a new authentication: a new session id (no fixation)
            session = (p.store.reauthenticate(session.id, event, new_session_id(), now, device)
                       if session else None)
        if session is not None:
            return session
    elif current is not None and current.subject != subject:
        # another user was signed in: end it first
        end_session(p, current.id, now, REPLACED_BY_SIGN_IN, client=client_id)
    session = new_session(subject, events, now, client_id, device)
    start_session(p, session, now)  # the oldest beyond the bound end
    return session
