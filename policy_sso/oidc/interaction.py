"""The interaction that resolves a decision: which page comes next, and the pending request.

When the evaluator refuses a request without ``prompt=none``, the user is
taken through the hosted pages until the policy is met (OIDC Core §3.1.2.3-4).
Which page comes next is worked out from the decision itself: reasons that
only a fresh sign-in clears lead to the password form; unmet authentication
requirements lead to whichever factor the hosted pages can offer that would
clear them (tried on a copy of the session); consent reasons lead to the
consent page. Anything no page can clear ends the interaction with the
decision's error sent to the client.

The pending authorization request travels in an HMAC-signed cookie (the store
has no generic short-lived record), with the interaction's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from policy_sso import b64url
from policy_sso.decision import Decision
from policy_sso.errors import PolicySSOError
from policy_sso.oidc.keys import write_whole
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session

INTERACTION_TTL = 900  # seconds a user has to finish the hosted pages
KEY_BYTES = 32

# Reasons only a new sign-in with the password form clears.
LOGIN_REASONS = frozenset({"no_session", "session_expired", "absolute_lifetime_exceeded",
                           "inactivity_timeout", "max_age_exceeded", "prompt_login",
                           "subject_mismatch", "sso_disabled"})
CONSENT_REASONS = frozenset({"consent_missing", "prompt_consent"})
# The second factors a user can add on the hosted pages: an authenticator app, a passkey (RFC 8176).
ENROLLABLE_FACTORS = ("otp", "hwk")

# A step the user could clear with a second factor they have not enrolled yet: the hosted pages
# explain what the app requires and offer enrolment where the tenant allows it (issue 18).
StepKind = Literal["complete", "login", "otp", "consent", "factor", "fail"]


@dataclass(frozen=True, slots=True)
class Interaction:
    """A pending authorization request, its CSRF token, when it began and whether the user signed in."""

    id: str
    csrf: str
    started_at: int
    params: dict[str, str]
    signed_in: bool = False

    def after_sign_in(self) -> Interaction:
        """Return this interaction marked as having had a password sign-in."""
        return replace(self, signed_in=True)

    def csrf_ok(self, token: str | None) -> bool:
        """Return whether a submitted form's CSRF token is this interaction's (constant time)."""
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf.encode())


def load_or_create_key(path: Path) -> bytes:
    """Return the HMAC key stored at ``path``, creating it (mode 0600) on first use.

    The file is created whole (a temporary file linked into place), so
    processes starting together all read the one key that won, never an empty
    or partial file (which would leave each with a key of its own).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, secrets.token_bytes(KEY_BYTES))  # False: another process's key won
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise PolicySSOError(f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte key: remove it")
    return key


class InteractionCodec:
    """Seals interactions into cookie values with HMAC-SHA256 and opens them again."""

    def __init__(self, key: bytes, ttl: int = INTERACTION_TTL) -> None:
        self._root = key
        self._key = hashlib.sha256(b"policy-sso interaction\0" + key).digest()
        self.ttl = ttl

    def tag(self, purpose: str, data: str) -> str:
        """Return an HMAC-SHA256 tag of ``data`` under a key derived for ``purpose``."""
        key = hashlib.sha256(f"policy-sso {purpose}\0".encode() + self._root).digest()
        return hmac.new(key, data.encode(), hashlib.sha256).hexdigest()

    def new(self, params: Mapping[str, str], now: int) -> Interaction:
        """Return a new interaction for the authorization parameters."""
        return Interaction(secrets.token_urlsafe(16), secrets.token_urlsafe(24), now, dict(params))

    def seal(self, interaction: Interaction) -> str:
        """Return the cookie value for an interaction: payload and MAC, base64url."""
        payload = b64url.encode(json.dumps({"i": interaction.id, "c": interaction.csrf,
                                            "t": interaction.started_at, "p": interaction.params,
                                            "s": interaction.signed_in},
                                           separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def open(self, value: str | None, interaction_id: str | None, now: int) -> Interaction | None:
        """Return the interaction a cookie holds if its MAC, id and age check out, else None."""
        if not value or not interaction_id or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            data = json.loads(b64url.decode(payload))
            found = Interaction(str(data["i"]), str(data["c"]), int(data["t"]),
                                {str(k): str(v) for k, v in data["p"].items()}, data.get("s") is True)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not hmac.compare_digest(found.id.encode(), interaction_id.encode()):
            return None
        if not found.started_at <= now < found.started_at + self.ttl:
            return None
        return found

    def _mac(self, payload: str) -> str:
        return b64url.encode(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())


def counted_session(request: AuthRequest, session: Session | None,
                    interaction: Interaction) -> Session | None:
    """Return the session as it counts for the interaction's request: what it is judged and answered by.

    A request that demands a fresh authentication (OIDC Core §3.1.2.1:
    ``prompt=login``, or a ``max_age`` the session's latest authentication
    was older than when the interaction began; ``max_age=0`` always) counts
    only the factors presented since the interaction began. The policy then
    asks again for a second factor it requires (``require mfa``, an acr
    level), as Keycloak re-runs every step on ``max_age=0``, and the tokens'
    ``auth_time``, ``acr`` and ``amr`` describe that authentication, not a
    factor from before it. Any other request counts the whole session.
    """
    if session is None or not demands_fresh_authentication(request, session, interaction.started_at):
        return session
    return session.since(interaction.started_at)


def demands_fresh_authentication(request: AuthRequest, session: Session, began: int) -> bool:
    """Return whether the request demands an authentication from ``began`` on (OIDC Core §3.1.2.1).

    ``max_age`` is judged by the session's events before ``began`` as the
    request's ``max_age_exceeded`` check judges ``auth_time``.
    """
    if "login" in request.prompt or request.max_age == 0:
        return True
    if request.max_age is None:
        return False
    latest = max((event.time for event in session.events if event.time < began), default=None)
    return latest is None or began - latest > request.max_age


def satisfied_request(request: AuthRequest, session: Session | None, interaction: Interaction,
                      consented: bool = False) -> AuthRequest:
    """Return the request minus what this interaction already satisfied.

    Once the user signed in during the interaction, ``prompt=login`` and
    ``max_age`` are met (OIDC Core §3.1.2.1; node-oidc-provider does the same);
    once they granted consent on its consent page, ``prompt=consent`` is. The
    session must also show that sign-in, so a stale cookie proves nothing;
    what else counts then is :func:`counted_session`'s to say.
    """
    prompt, max_age = request.prompt, request.max_age
    if (interaction.signed_in and session is not None
            and session.auth_time >= interaction.started_at):
        prompt, max_age = prompt - {"login"}, None
    if consented:
        prompt = prompt - {"consent"}
    if prompt is request.prompt and max_age is request.max_age:
        return request
    return replace(request, prompt=prompt, max_age=max_age)


@dataclass(frozen=True, slots=True)
class Step:
    """What the interaction does next, the decision that led there and the session it judged.

    ``session`` is the session as it counts for the request
    (:func:`counted_session`): what a completed interaction's tokens describe.
    ``factors``: at an ``otp`` step, the user's second factors that clear it
    (a code cannot reach a level that needs a hardware key: the page then
    offers the passkey alone).
    """

    kind: StepKind
    decision: Decision
    session: Session | None = None
    factors: tuple[str, ...] = ()


def next_step(decision: Decision, session: Session | None,
              decide: Callable[[Session], Decision], offered: tuple[str, ...], now: int,
              *, lacking: tuple[str, ...] = ()) -> Step:
    """Return the page that resolves ``decision``, given the second factors the user can offer.

    ``session`` is the one ``decision`` judged (:func:`counted_session`).
    ``decide`` re-evaluates the same request for another session; it is used
    to try a factor on a copy of the session before asking the user for it.
    ``lacking`` are the factors the tenant knows but the user has not enrolled:
    when one of them would clear the decision, the step is ``factor`` (a page
    that says so) instead of ``fail`` (the error sent back to the app).
    """
    if decision.allowed:
        return Step("complete", decision, session)
    codes = set(decision.codes)
    if session is None or codes & LOGIN_REASONS:
        return Step("login", decision, session)
    if codes <= CONSENT_REASONS:
        return Step("consent", decision, session)

    def clears(methods: tuple[str, ...]) -> bool:
        trial = session
        for method in methods:
            trial = trial.with_event(AuthEvent(method, now), session.id)
        return not (set(decide(trial).codes) - CONSENT_REASONS)

    clearing = tuple(method for method in offered if clears((method,)))
    if clearing:
        return Step("otp", decision, session, clearing)
    if clears(("pwd",)) or any(clears(("pwd", m)) for m in offered):
        return Step("login", decision, session)
    if any(clears((m,)) or clears(("pwd", m)) for m in lacking):
        return Step("factor", decision, session)
    return Step("fail", decision, session)
