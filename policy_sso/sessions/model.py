"""The SSO session (SPEC §3): who signed in, how and when, and where it has been used.

A :class:`Session` stores only primary facts: authentication events, times,
joined clients and consents. Everything the policy evaluator needs (methods
held, auth_time, factors, MFA) is derived from those facts once per session
object and cached, never stored twice.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from functools import cached_property

# RFC 8176 §2 method values grouped by authentication factor; ``mfa`` holds
# when the events span two distinct factors (RFC 8176 'mfa': "multiple-factor").
FACTOR_OF_METHOD: dict[str, str] = {
    "pwd": "knowledge", "pin": "knowledge", "kba": "knowledge",
    "otp": "possession", "hwk": "possession", "swk": "possession", "sms": "possession",
    "tel": "possession", "sc": "possession", "pop": "possession",
    "fpt": "inherence", "face": "inherence", "iris": "inherence", "retina": "inherence",
    "vbm": "inherence", "bio": "inherence", "geo": "location",
    "wia": "knowledge", "kerberos": "knowledge", "user": "presence",
}
SECOND_FACTORS = frozenset({"possession", "inherence"})

SESSION_ID_BYTES = 32  # 256 random bits; SPEC §3 asks for at least 128


@dataclass(frozen=True)
class AuthEvent:
    """One successful authentication: the RFC 8176 method and when it happened (epoch s)."""

    method: str
    time: int


@dataclass(frozen=True)
class ClientJoin:
    """A client the session has signed into, with the OIDC ``sid`` that client was given."""

    client_id: str
    sid: str
    joined_at: int


@dataclass(frozen=True)
class Device:
    """Where a session was (re-)authenticated from, for its user to recognise it on /account.

    ``address``: the client address (:func:`server.client_address.client_ip`,
    trusted proxies only). ``label``: a short description of the browser made
    from its User-Agent, such as "Chrome on Linux" (:mod:`policy_sso.sessions.device`);
    the User-Agent itself is not kept.
    """

    address: str
    label: str


@dataclass(frozen=True)
class Session:
    """An SSO session. Treat the dict fields as read-only: stores return fresh objects."""

    id: str
    subject: str
    created_at: int
    last_seen: int
    events: tuple[AuthEvent, ...]
    clients: dict[str, ClientJoin] = field(default_factory=dict)
    consents: dict[str, frozenset[str]] = field(default_factory=dict)
    # The client the user signed in at to create the session (None: not recorded, e.g. a
    # fixture). With ``sso.active: false`` the session serves that client only (IBM App ID's
    # "SSO off": each app signs the user in itself). A re-authentication keeps it.
    created_for: str | None = None
    # Where the latest authentication came from (None: not recorded, e.g. the backend API or a
    # session stored before it was recorded).
    device: Device | None = None
    # When each consented scope was granted (epoch s): client_id -> scope -> time, for consent
    # lifetimes (``require consent … for D``). A scope granted before times were recorded has
    # none and counts as granted at ``created_at``, the earliest it can have been (fail closed).
    consent_times: dict[str, dict[str, int]] = field(default_factory=dict)

    @cached_property
    def methods(self) -> dict[str, int]:
        """Return each authentication method held, mapped to its latest time."""
        latest: dict[str, int] = {}
        for event in self.events:
            if event.time > latest.get(event.method, -1):
                latest[event.method] = event.time
        return latest

    @cached_property
    def auth_time(self) -> int:
        """Return the time of the latest authentication (OIDC ``auth_time``)."""
        return max((e.time for e in self.events), default=self.created_at)

    @cached_property
    def factors(self) -> frozenset[str]:
        """Return the distinct authentication factors the events cover."""
        return frozenset(FACTOR_OF_METHOD.get(m, m) for m in self.methods)

    @cached_property
    def mfa(self) -> bool:
        """Return whether two distinct factors were presented (RFC 8176 ``mfa``)."""
        return len(self.factors) >= 2

    @cached_property
    def second_factor_time(self) -> int | None:
        """Return the latest possession or inherence event time when MFA holds, else None."""
        if not self.mfa:
            return None
        times = [t for m, t in self.methods.items() if FACTOR_OF_METHOD.get(m) in SECOND_FACTORS]
        return max(times, default=None)

    @cached_property
    def amr(self) -> tuple[str, ...]:
        """Return the ``amr`` claim: methods held, plus ``mfa`` when it holds."""
        values = sorted(self.methods)
        return (*values, "mfa") if self.mfa else tuple(values)

    def with_client(self, join: ClientJoin) -> Session:
        """Return this session joined to a client; an existing join (and its ``sid``) is kept."""
        if join.client_id in self.clients:
            return self
        return replace(self, clients={**self.clients, join.client_id: join})

    def without_consent(self, client_id: str) -> Session:
        """Return this session with what the user granted ``client_id`` withdrawn."""
        if client_id not in self.consents:
            return self
        return replace(self, consents={k: v for k, v in self.consents.items() if k != client_id},
                       consent_times={k: v for k, v in self.consent_times.items() if k != client_id})

    def with_consent(self, client_id: str, scopes: frozenset[str], at: int | None = None) -> Session:
        """Return this session with ``scopes`` added to what the user granted ``client_id``.

        ``at``: when they were granted; a scope granted again is granted anew (its
        lifetime starts over).
        """
        granted = self.consents.get(client_id, frozenset()) | frozenset(scopes)
        times = self.consent_times
        if at is not None:
            times = {**times, client_id: {**times.get(client_id, {}), **dict.fromkeys(scopes, at)}}
        return replace(self, consents={**self.consents, client_id: granted}, consent_times=times)

    def consent_granted_at(self, client_id: str, scope: str) -> int:
        """Return when ``scope`` was granted to ``client_id`` (``created_at`` when not recorded)."""
        return self.consent_times.get(client_id, {}).get(scope, self.created_at)

    def consent_since(self, client_id: str, scopes: frozenset[str]) -> int:
        """Return when the oldest grant among ``scopes`` to ``client_id`` was given."""
        times = self.consent_times.get(client_id, {})
        return min((times.get(scope, self.created_at) for scope in scopes), default=self.created_at)

    def with_event(self, event: AuthEvent, new_id: str, device: Device | None = None) -> Session:
        """Return this session re-authenticated: the event added, under a new id (no fixation).

        ``device``: where the authentication came from; None keeps the one recorded.
        """
        return replace(self, id=new_id, events=(*self.events, event), last_seen=event.time,
                       device=device or self.device)

    def since(self, time: int) -> Session:
        """Return this session with only the events at or after ``time``: what a fresh authentication counts.

        A request that demands a fresh authentication (``prompt=login``, an
        exceeded ``max_age``) is judged, and its tokens' ``auth_time``, ``acr``
        and ``amr`` worked out, from the factors presented since it began, not
        from older ones the session still holds. The view is never stored.
        """
        kept = tuple(event for event in self.events if event.time >= time)
        return self if len(kept) == len(self.events) else replace(self, events=kept)


def new_session_id() -> str:
    """Return a fresh opaque session id with 256 random bits."""
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def new_session(subject: str, events: tuple[AuthEvent, ...], now: int,
                created_for: str | None = None, device: Device | None = None) -> Session:
    """Return a new session for ``subject`` authenticated by ``events`` at ``now`` (at ``created_for``)."""
    return Session(id=new_session_id(), subject=subject, created_at=now, last_seen=now,
                   events=events, created_for=created_for, device=device)


# Why a session ended (SPEC §2 reason codes for the lifetime limits; the others say who ended it).
SESSION_EXPIRED = "session_expired"  # the sliding lifetime since the last authentication
ABSOLUTE_LIFETIME_EXCEEDED = "absolute_lifetime_exceeded"  # require_login_after since creation
INACTIVITY_TIMEOUT = "inactivity_timeout"  # idle longer than the inactivity window
LOGGED_OUT = "logged_out"  # RP-initiated or backend logout
ENDED_BY_ADMIN = "ended_by_admin"  # the admin API ended the user's sessions
PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a reason code; a password change ends every session (IBM App ID seed)
REPLACED_BY_SIGN_IN = "replaced_by_sign_in"  # another user signed in on the same browser
SESSION_LIMIT = "session_limit"  # pushed out by the user's newer sessions (session.max_per_user)
EXPIRY_REASONS = (SESSION_EXPIRED, ABSOLUTE_LIFETIME_EXCEEDED, INACTIVITY_TIMEOUT)
END_REASONS = frozenset({*EXPIRY_REASONS, LOGGED_OUT, ENDED_BY_ADMIN, PASSWORD_CHANGED,
                         REPLACED_BY_SIGN_IN, SESSION_LIMIT})

# How long the record of why a session ended is kept after the end (a documented fixed
# period): long enough for an app's next silent sign-in to hear why, short enough to keep
# nothing of the session but the reason.
END_RECORD_TTL = 86400


@dataclass(frozen=True)
class SessionEnd:
    """Why a session ended: the reason code, when (epoch s) and, for an expiry, the limit (s).

    Kept by the store for :data:`END_RECORD_TTL` seconds after ``at``, keyed by
    the session id's digest; nothing else of the session is kept.
    """

    reason: str
    at: int
    limit: int | None = None

    def to_json(self) -> dict[str, int | str]:
        """Return the record as a compact JSON object (``r``, ``t`` and, for expiries, ``l``)."""
        out: dict[str, int | str] = {"r": self.reason, "t": self.at}
        if self.limit is not None:
            out["l"] = self.limit
        return out

    @classmethod
    def from_json(cls, data: dict[str, int | str]) -> SessionEnd:
        """Return the record :meth:`to_json` wrote."""
        limit = data.get("l")
        return cls(str(data["r"]), int(data["t"]), int(limit) if limit is not None else None)

    def kept_until(self) -> int:
        """Return the first second at which the record is gone."""
        return self.at + END_RECORD_TTL


@dataclass(frozen=True)
class SessionLifetime:
    """The tenant's session lifetime rules (SPEC §3), enforced by every store.

    ``sliding``: valid this long after the latest authentication (14 days).
    ``absolute``: never past this long after creation (``require_login_after``).
    ``inactivity``: ended when idle longer than this (tenant default 86400 s).
    ``touch_interval``: last-seen is only rewritten once it has moved this far,
    so a read is not a write; policies' shorter inactivity windows are checked
    by the evaluator with at most this much slack.
    """

    sliding: int = 14 * 86400
    absolute: int = 30 * 86400
    inactivity: int = 86400
    touch_interval: int = 60

    def expires_at(self, session: Session) -> int:
        """Return the first second at which the session is no longer valid."""
        return min(session.auth_time + self.sliding,
                   session.created_at + self.absolute,
                   session.last_seen + self.inactivity) + 1

    def end_of(self, session: Session) -> SessionEnd:
        """Return how the session ends unless it is used or ended first: the limit reached first.

        ``at`` is the first second it is no longer valid (:meth:`expires_at`); on a
        tie the sliding lifetime, then require_login_after, then inactivity is named.
        """
        return min((SessionEnd(SESSION_EXPIRED, session.auth_time + self.sliding + 1, self.sliding),
                    SessionEnd(ABSOLUTE_LIFETIME_EXCEEDED, session.created_at + self.absolute + 1,
                               self.absolute),
                    SessionEnd(INACTIVITY_TIMEOUT, session.last_seen + self.inactivity + 1,
                               self.inactivity)),
                   key=lambda end: end.at)

    def is_live(self, session: Session, now: int) -> bool:
        """Return whether the session is still valid at ``now`` (limits are inclusive)."""
        return now < self.expires_at(session)
