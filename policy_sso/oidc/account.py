"""What a signed-in user does on ``/account``: see and end their sessions, see and withdraw
consents, change their password, add and remove second factors (issue 18).

Sensitive actions (password, factors) need a recent authentication: the
tenant's ``enrolment.within`` (Keycloak's account console asks the same).
A password change revokes the old password's grants as the admin reset does
(:mod:`policy_sso.oidc.credential_change`: refresh and access tokens of every
authentication before now), ends the user's other sessions with back-channel
logout, and re-authenticates the current one so it keeps working.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from policy_sso.credentials import hash_password
from policy_sso.errors import PolicySSOError
from policy_sso.messages import Message
from policy_sso.oidc import enrolment, reachability
from policy_sso.oidc.admin import write_password_hash
from policy_sso.oidc.consents import ConsentNotFound, consents_in, withdraw_user_consents
from policy_sso.oidc.credential_change import revoke_grants_of
from policy_sso.oidc.provider import Provider, end_session
from policy_sso.sessions.model import (
    LOGGED_OUT,
    PASSWORD_CHANGED,
    AuthEvent,
    Device,
    Session,
    new_session_id,
)
from policy_sso.sessions.store import session_key

log = logging.getLogger(__name__)

MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class Overview:
    """What the account page lists."""

    sessions: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    factors: list[dict[str, Any]]
    recent: bool  # whether sensitive actions are allowed without signing in again


def form_token(p: Provider, purpose: str, session: Session) -> str:
    """Return the CSRF token of ``purpose``'s forms for this session, the same after it re-authenticates.

    Every authentication moves a session to a new id (no fixation), so a
    token keyed on the id failed a form left open in another tab as soon as
    the user signed in again or stepped up there. The session's subject and
    ``created_at`` survive a re-authentication and change with a sign-out or
    another user's sign-in (a new session); the server's secret key keeps the
    token as unguessable as before.
    """
    return p.codec.tag(purpose, f"{session.subject}\0{session.created_at}")


def form_token_ok(p: Provider, purpose: str, session: Session, token: str | None) -> bool:
    """Return whether a submitted form's token is :func:`form_token`'s for this session (constant time)."""
    return bool(token) and hmac.compare_digest(form_token(p, purpose, session).encode(),
                                               (token or "").encode())


def recent_enough(p: Provider, session: Session, now: int) -> bool:
    """Return whether the session authenticated recently enough for a sensitive action.

    Signed in within ``enrolment.within`` and, when the user has second
    factors, one of them used that recently too (changing the password or
    removing a factor with a stolen password alone is what MFA is there to stop).
    """
    return (now - session.auth_time <= p.tenant.settings.enrolment.within
            and enrolment.proven_for_factor_change(p, session, now))


def overview(p: Provider, session: Session, now: int, name_of: Any) -> Overview:
    """Return the user's sessions, consents per app and factors; ``name_of`` names a client for people."""
    sessions = sorted(p.store.sessions_of(session.subject, now), key=lambda s: -s.last_seen)
    current = session_key(session.id)
    # each row names its session by its key (what the store handed out), never by an id
    rows = [{"id": s.id, "current": session_key(s.id) == current, "created_at": s.created_at,
             "last_seen": s.last_seen, "amr": list(s.amr),
             "device": s.device.label if s.device else "", "address": s.device.address if s.device else "",
             "apps": sorted(name_of(c) for c in s.clients)} for s in sessions]
    granted: dict[str, set[str]] = {}
    for s in sessions:
        for client_id, scopes in s.consents.items():
            granted.setdefault(client_id, set()).update(scopes)
    consents = [{"client_id": c, "name": name_of(c), "scopes": sorted(v)} for c, v in sorted(granted.items())]
    # when a grant stops counting under the app's policy (require consent … for D; issue 19)
    expiry = {c.client_id: c.expires_at for c in consents_in(p, sessions)}
    for row in consents:
        expires = expiry.get(row["client_id"])
        row["expires"] = (datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                          if expires else "")
        row["expired"] = expires is not None and now >= expires
    factors: list[dict[str, Any]] = []
    held = p.store.credentials_of(session.subject)
    for cid, record in sorted(held.items()):
        if record.get("kind") in ("totp", "passkey"):
            factors.append({"id": cid, "kind": record["kind"], "label": record.get("label", ""),
                            "created_at": record.get("created_at"), "removable": True})
    if session.subject in p.totp_secrets and enrolment.TOTP_CREDENTIAL not in held:
        factors.append({"id": "", "kind": "totp", "label": "", "seeded": True,  # the page names it
                        "created_at": None, "removable": False})
    return Overview(rows, consents, factors, recent_enough(p, session, now))


def end_own_session(p: Provider, session: Session, session_id: str, now: int) -> bool:
    """End one of the user's own sessions (back-channel logout included); return whether it was theirs.

    ``session_id``: the key the overview named it by (a form field, so a plain str: the
    store is given the key of the session it matched).
    """
    own = next((s for s in p.store.sessions_of(session.subject, now) if s.id == session_id), None)
    if own is None:
        return False
    return end_session(p, own.id, now, LOGGED_OUT) is not None


def withdraw_consent(p: Provider, session: Session, client_id: str, now: int) -> bool:
    """Withdraw what the user granted ``client_id`` in every session; return whether anything was."""
    try:
        withdraw_user_consents(p, session.subject, now, client_id, by="user", session_id=session.id)
    except ConsentNotFound:
        return False
    return True


def change_password(p: Provider, session: Session, current: str, new: str, now: int, *,
                    address: str = "-", device: Device | None = None) -> tuple[str | None, Message]:
    """Change the user's password; return (the re-authenticated session id or None, a message).

    The current password is checked as a sign-in's is: the guessing throttle
    for this account at this client ``address`` first (RateLimited), a wrong
    one counted against it, the hash in its pool. Then the other sessions end
    and every grant of an earlier authentication is revoked (RFC 9700 §4.14.2),
    as the admin reset does.
    """
    user = p.user(session.subject)
    if user is None:
        return None, Message("message.account_unknown")
    if len(new) < MIN_PASSWORD:
        return None, Message("message.password_too_short", minimum=MIN_PASSWORD)
    guessing = p.limiter.guessing
    guessing.admit("pwd", user.sub, address, now)
    if not guessing.hashing.verify(enrolment.password_hash_of(p, user), current):
        guessing.failed("pwd", user.sub, address, now)
        p.audit.record("sign_in.failure", now, outcome="failure", subject=user.sub, factor="pwd",
                       failure="wrong_password", session_id=session.id)  # the account page's check
        return None, Message("message.password_wrong")
    revoke_grants_of(p, session.subject, now)  # first: a store fault stops here with nothing changed
    new_hash = hash_password(new)
    enrolment.set_password_hash(p, session.subject, new_hash, now)
    if getattr(p.store, "loses_records", False) is True:
        _outlive_the_store(p, session.subject, new_hash)
    current = session_key(session.id)
    others = [s for s in p.store.sessions_of(session.subject, now) if session_key(s.id) != current]
    for other in others:
        end_session(p, other.id, now, PASSWORD_CHANGED)
    moved = p.store.reauthenticate(session.id, AuthEvent("pwd", now), new_session_id(), now, device)
    p.audit.record("account.password_changed", now, outcome="success", subject=session.subject,
                   sessions_ended=len(others))
    return (moved.id if moved else None), Message("message.password_changed")


def _outlive_the_store(p: Provider, subject: str, new_hash: str) -> None:
    """Write the new hash into users.yaml too, as the admin API does, when the store may lose it.

    A Redis that loses its data (a restart without persistence, a flush) would otherwise take
    the new password with it, and users.yaml's old one would sign in again. Where users.yaml
    cannot be written the change stands in the store alone, and the log says so.
    """
    try:
        durable = write_password_hash(p, subject, new_hash).applied
    except (OSError, PolicySSOError) as err:
        durable = False
        log.warning("users.yaml could not be written (%s)", type(err).__name__)
    if not durable:
        log.warning("the new password of %s is kept by the store alone: if the store loses its data, "
                    "the password in users.yaml signs in again; set it with the admin API instead",
                    subject)


def remove_factor(p: Provider, session: Session, credential_id: str, now: int,
                  name_of: Callable[[str], str] = str) -> Message:
    """Remove an enrolled factor unless some app's policy would be out of reach without it; return a message.

    What the user could still present afterwards is checked against every
    policy (:mod:`policy_sso.oidc.reachability`); a refusal names the apps
    (``name_of`` names a client for people).
    """
    held = p.store.credentials_of(session.subject)
    record = held.get(credential_id)
    if record is None or record.get("kind") not in ("totp", "passkey"):
        return Message("message.factor_unknown")
    seeded = session.subject in p.totp_secrets
    before = reachability.methods_held(held, seeded_totp=seeded)
    rest = {c: r for c, r in held.items() if c != credential_id}
    after = reachability.methods_held(rest, seeded_totp=seeded)
    needs = reachability.lost_apps(p.tenant, before, after, now)
    if not needs:
        p.store.delete_credential(session.subject, credential_id)
        # Checked again after the delete: two removals racing (two tabs, two instances) each saw the
        # other's factor still there. Whichever finds the apps out of reach now puts its factor back,
        # so the user never ends with fewer than the policies need; a put-back only adds.
        remaining = reachability.methods_held(p.store.credentials_of(session.subject), seeded_totp=seeded)
        needs = reachability.lost_apps(p.tenant, before, remaining, now)
        if needs:
            p.store.put_credential(session.subject, credential_id, record)
    if needs:
        always = sorted({name_of(n.client_id) for n in needs if not n.only_sometimes})
        sometimes = sorted({name_of(n.client_id) for n in needs if n.only_sometimes} - set(always))
        return removal_refused_message(always, sometimes)
    factor = "otp" if record["kind"] == "totp" else "hwk"
    p.audit.record("factor.removed", now, outcome="success", subject=session.subject,
                   session_id=session.id, factor=factor)
    return Message("message.factor_removed")


def removal_refused_message(always: list[str], sometimes: list[str]) -> Message:
    """Return what the account page says when a factor is kept because apps need it."""
    if always and sometimes:
        return Message("message.factor_needed_both", apps=", ".join(always), sometimes=", ".join(sometimes))
    if always:
        return Message("message.factor_needed", apps=", ".join(always))
    return Message("message.factor_needed_sometimes", apps=", ".join(sometimes))


def enrolled_with_code(p: Provider, session: Session, secret: str, code: str, now: int,
                       *, device: Device | None = None) -> Session | None:
    """Enrol an authenticator app confirmed by ``code`` and add ``otp`` to the session; return it, or None.

    The confirming code is spent (RFC 6238 §5.2), so it cannot sign in again.
    """
    from policy_sso.oidc.provider import SPENT_TOTP_CODES
    from policy_sso.oidc.sign_in import TOTP_REPLAY_WINDOW

    if not enrolment.confirm_totp(p, session, secret, code, now):
        return None
    p.store.use_jti(SPENT_TOTP_CODES, f"{session.subject}:{code.strip().replace(' ', '')}",
                    now + TOTP_REPLAY_WINDOW, now=now)
    moved = p.store.reauthenticate(session.id, AuthEvent("otp", now), new_session_id(), now, device)
    if moved is not None:
        p.audit.record("second_factor.success", now, outcome="success", subject=session.subject,
                       session_id=moved.id, factor="otp")
    return moved
