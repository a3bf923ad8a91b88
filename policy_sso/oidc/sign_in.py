"""What the hosted pages do: sign in with a password, add a TOTP factor, grant consent.

Every successful authentication moves the session to a new id
(:meth:`Store.reauthenticate`, or a new session), so an id planted before
sign-in is worthless afterwards (session fixation, RFC 9700 §4.12-style).
A different user signing in on the same browser ends the old session first.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy_sso import credentials
from policy_sso.messages import Message
from policy_sso.networks import IPAddress
from policy_sso.oidc.authorization_flow import (
    Answer,
    Interact,
    audit_decision,
    decision_error,
    issue,
    parse_request,
    resolve,
)
from policy_sso.oidc.authorize import AuthorizationError, AuthorizationRequest
from policy_sso.oidc.credential_change import issued_before_store_loss
from policy_sso.oidc.enrolment import password_hash_of, totp_secret_of
from policy_sso.oidc.interaction import Interaction, Step
from policy_sso.oidc.provider import SPENT_TOTP_CODES, Provider, end_session, reusable_for, start_session
from policy_sso.ratelimit import ADDRESS
from policy_sso.sessions.model import (
    REPLACED_BY_SIGN_IN,
    AuthEvent,
    Device,
    Session,
    new_session,
    new_session_id,
)

TOTP_REPLAY_WINDOW = 120  # seconds a used code stays recorded: the ±1 step window and then some


@dataclass(frozen=True, slots=True)
class Page:
    """What a hosted page needs: the request, the session and the step to show."""

    request: AuthorizationRequest
    session: Session | None
    step: Step


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of a sign-in attempt: the session id to set, or a message to show (a catalogue Message)."""

    session_id: str | None
    message: str = ""


def current_page(p: Provider, interaction: Interaction, session_id: str | None, now: int,
                 *, consented: bool = False, client_ip: IPAddress | None = None) -> Page:
    """Return the request, session and next step of a pending interaction (``client_ip``: this request's)."""
    areq = parse_request(p, interaction.params, now, client_ip=client_ip)
    session = p.store.get_session(session_id, now) if session_id else None
    return Page(areq, session, resolve(p, areq, session, interaction, now, consented=consented))


def proceed(p: Provider, page: Page, interaction: Interaction, now: int) -> Answer | Interact:
    """Return where the interaction goes after a page: the client, or the next page."""
    kind = page.step.kind
    if kind in ("complete", "fail"):  # the interaction's last word on the request
        audit_decision(p, page.request, page.session, page.step.decision, now, interaction=True)
    if kind == "complete":
        assert page.step.session is not None
        # the session as the request counts it: after prompt=login or an exceeded max_age, only the
        # factors of this interaction (auth_time, acr and amr describe that authentication)
        return Answer(issue(p, page.request, page.step.session, now))
    if kind == "fail":
        raise AuthorizationError(decision_error(page.step.decision), page.request.target)
    return Interact("consent" if kind == "consent" else "login", interaction)


def sign_in_password(p: Provider, session_id: str | None, username: str, password: str,
                     now: int, *, client_id: str | None = None, address: str = "-",
                     device: Device | None = None) -> Attempt:
    """Return the new session id after a correct password, or a message for the form.

    ``client_id`` is the client the user signs in at: a new session records it.
    Before any hashing: the client address's attempt limit (``login``), then
    the guessing throttle for this account at this address; both refuse with
    RateLimited. A wrong password counts against the account at this address
    and the address, never the account everywhere (SPEC §7: no lockout).
    ``address`` is the client's (:mod:`server.client_address`); ``device``,
    where the browser is, is recorded in the session for the account page.
    """
    limiter = p.limiter
    limiter.check("login", ADDRESS, address, now=now)  # per address: floods of new usernames stop here
    user = p.tenant.users_by_name.get(username)
    # an unknown username is throttled like a known one (its own digest), so refusals tell nothing
    account = user.sub if user is not None else "?" + username.casefold()
    limiter.guessing.admit("pwd", account, address, now)
    # an unknown user costs one real hash too: no user enumeration by timing
    # the hash set at run time (/account, the admin API) lives in the store, users.yaml's is the seed
    if not limiter.guessing.hashing.verify(password_hash_of(p, user) if user else None, password):
        limiter.guessing.failed("pwd", account, address, now)
        p.audit.record("sign_in.failure", now, outcome="failure", client=client_id,  # never the password
                       subject=user.sub if user else None, factor="pwd",
                       failure="wrong_password" if user else "unknown_user")
        return Attempt(None, Message("message.wrong_password"))
    assert user is not None  # verify() is False for an unknown user
    p.audit.record("sign_in.success", now, outcome="success", client=client_id, subject=user.sub,
                   factor="pwd")
    event = AuthEvent("pwd", now)
    current = p.store.get_session(session_id, now) if session_id else None
    if current is not None and current.subject == user.sub and (
            client_id is None or reusable_for(p, current, client_id)):
        moved = p.store.reauthenticate(current.id, event, new_session_id(), now, device)
        if moved is not None:
            return Attempt(moved.id)
    elif current is not None and current.subject != user.sub:
        # another user was signed in: end it first
        end_session(p, current.id, now, REPLACED_BY_SIGN_IN, client=client_id)
    session = new_session(user.sub, (event,), now, client_id, device)
    start_session(p, session, now)  # the oldest beyond the bound end
    return Attempt(session.id)


def sign_in_otp(p: Provider, session: Session, code: str, now: int, address: str = "-", *,
                device: Device | None = None, client_id: str | None = None) -> Attempt:
    """Return the new session id after a valid, unused TOTP code (RFC 6238), or a message.

    ``client_id``: the client the factor is added for (its events name it).

    RFC 4226 §7.3: guessing is throttled per user and client address, checked
    before the code is; a wrong or replayed code counts as a failure.
    """
    guessing = p.limiter.guessing
    guessing.admit("otp", session.subject, address, now)
    secret = totp_secret_of(p, session.subject)  # enrolled (store) or seeded (users.yaml)
    code = code.strip().replace(" ", "")
    if secret is None or not credentials.verify_totp(secret, code, now):
        guessing.failed("otp", session.subject, address, now)
        p.audit.record("second_factor.failure", now, outcome="failure", client=client_id,
                       subject=session.subject, session_id=session.id, factor="otp",
                       failure="invalid_code")  # never the code
        return Attempt(None, Message("message.code_invalid"))
    # RFC 6238 §5.2: a verified code must not be accepted a second time
    if not p.store.use_jti(SPENT_TOTP_CODES, f"{session.subject}:{code}", now + TOTP_REPLAY_WINDOW,
                           now=now):
        guessing.failed("otp", session.subject, address, now)
        p.audit.record("second_factor.failure", now, outcome="failure", client=client_id,
                       subject=session.subject, session_id=session.id, factor="otp",
                       failure="replayed_code")
        return Attempt(None, Message("message.code_used"))
    if issued_before_store_loss(p, credentials.totp_earliest_use(now)):
        # the store lost its records since this code became valid: its use may have gone with them
        p.audit.record("second_factor.failure", now, outcome="failure", client=client_id,
                       subject=session.subject, session_id=session.id, factor="otp",
                       failure="store_lost_records")
        return Attempt(None, Message("message.code_used"))
    moved = p.store.reauthenticate(session.id, AuthEvent("otp", now), new_session_id(), now, device)
    if moved is None:
        return Attempt(None, Message("message.session_ended"))
    p.audit.record("second_factor.success", now, outcome="success", client=client_id, subject=session.subject,
                   session_id=moved.id, factor="otp")
    return Attempt(moved.id)


def grant_consent(p: Provider, page: Page, now: int) -> Session | None:
    """Record consent for the requested scopes and the policy's required ones; return the session."""
    assert page.session is not None
    remedy = page.step.decision.remedy
    scopes = frozenset(page.request.consent_scopes) | frozenset(remedy.scopes if remedy else ())
    p.audit.record("consent.granted", now, outcome="granted", client=page.request.client.client_id,
                   subject=page.session.subject, session_id=page.session.id, scopes=sorted(scopes))
    return p.store.grant_consent(page.session.id, page.request.client.client_id, scopes, now)
