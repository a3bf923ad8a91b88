"""A user's consents across their sessions, with when each was granted and when it expires (issue 19).

Consents live on the sessions (SPEC §3), so a user's consent to a client is
what their live sessions granted it. A grant's expiry is not stored: it is
computed from the client's *current* policy (``require consent … for D``), so
a lifetime shortened at reload applies to grants already made (fail closed),
as the evaluator does. The admin API lists and withdraws them
(``GET``/``DELETE /admin/v1/users/{sub}/consents[/{client}]``); the account
page shows the expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from policy_sso.checks import consent_expires_at
from policy_sso.errors import OAuthError
from policy_sso.oidc.admin import UserNotFound
from policy_sso.oidc.credential_change import revoke_consented_grants
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import Session


@dataclass(frozen=True, slots=True)
class ScopeGrant:
    """One scope granted to a client: when (the newest grant among the sessions) and its expiry."""

    scope: str
    granted_at: int
    expires_at: int | None  # the first second it no longer counts; None: no lifetime applies


@dataclass(frozen=True, slots=True)
class ClientConsent:
    """What a user granted one client, across their live sessions."""

    client_id: str
    grants: tuple[ScopeGrant, ...]

    @property
    def granted_at(self) -> int:
        """Return when the oldest of these grants was given."""
        return min(g.granted_at for g in self.grants)

    @property
    def expires_at(self) -> int | None:
        """Return when the first of these grants stops counting (None: none expires)."""
        return min((g.expires_at for g in self.grants if g.expires_at is not None), default=None)

    def to_json(self, now: int) -> dict[str, Any]:
        """Return the admin API's view: scopes, granted_at, expires_at (epoch s) and each grant."""
        expires = self.expires_at
        return {"client_id": self.client_id, "scopes": [g.scope for g in self.grants],
                "granted_at": self.granted_at, "expires_at": expires,
                "expired": expires is not None and now >= expires,
                "grants": [{"scope": g.scope, "granted_at": g.granted_at, "expires_at": g.expires_at}
                           for g in self.grants]}


class ConsentNotFound(OAuthError):
    error = "consent_not_found"
    status = 404


def consents_of(p: Provider, subject: str, now: int) -> list[ClientConsent]:
    """Return what the user granted each client in their live sessions, by client_id."""
    return consents_in(p, p.store.sessions_of(subject, now))


def consents_in(p: Provider, sessions: Iterable[Session]) -> list[ClientConsent]:
    """Return what these sessions (one user's) granted each client, by client_id."""
    newest: dict[str, dict[str, int]] = {}
    for session in sessions:
        for client_id, scopes in session.consents.items():
            times = newest.setdefault(client_id, {})
            for scope in scopes:
                at = session.consent_granted_at(client_id, scope)
                times[scope] = max(at, times.get(scope, at))
    out = []
    for client_id, times in sorted(newest.items()):
        policy = p.tenant.policy_for(client_id) if p.tenant.governs(client_id) else None
        grants = []
        for scope, at in sorted(times.items()):
            lifetime = policy.consent_lifetime(scope) if policy is not None else None
            grants.append(ScopeGrant(scope, at, consent_expires_at(at, lifetime) if lifetime else None))
        if grants:
            out.append(ClientConsent(client_id, tuple(grants)))
    return out


def list_user_consents(p: Provider, subject: str, now: int) -> list[ClientConsent]:
    """Return a user's consents for the admin API; raise UserNotFound for an unknown subject."""
    if p.user(subject) is None:
        raise UserNotFound(f"no user with subject {subject!r}")
    return consents_of(p, subject, now)


def withdraw_user_consents(p: Provider, subject: str, now: int, client_id: str | None = None,
                           *, by: str = "admin", **details: Any) -> dict[str, list[str]]:
    """Withdraw what the user granted ``client_id`` (every client when None) in all their sessions.

    Return the scopes withdrawn per client; each client's withdrawal is one
    ``consent.revoked`` event. Raise UserNotFound for an unknown subject and
    ConsentNotFound when a named client holds no consent of the user. The
    tokens the client was issued before are revoked with it
    (:func:`revoke_consented_grants`). ``details`` go into each event.
    """
    if p.user(subject) is None:
        raise UserNotFound(f"no user with subject {subject!r}")
    withdrawn: dict[str, set[str]] = {}
    for session in p.store.sessions_of(subject, now):
        for granted_to, scopes in session.consents.items():
            if client_id is None or granted_to == client_id:
                withdrawn.setdefault(granted_to, set()).update(scopes)
                p.store.withdraw_consent(session.id, granted_to, now)
    if client_id is not None and client_id not in withdrawn:
        raise ConsentNotFound(f"user {subject!r} has granted client {client_id!r} nothing")
    for granted_to, scopes in sorted(withdrawn.items()):
        revoke_consented_grants(p, subject, granted_to, now)
        p.audit.record("consent.revoked", now, outcome="revoked", client=granted_to, subject=subject,
                       scopes=sorted(scopes), by=by, **details)
    return {c: sorted(s) for c, s in sorted(withdrawn.items())}
