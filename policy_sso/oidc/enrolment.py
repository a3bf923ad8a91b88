"""Second factors a user adds themselves: who may, after what, and TOTP enrolment (RFC 6238).

Who may enrol, and after which authentication, is the tenant's ``enrolment:``
block (:class:`policy_sso.config.EnrolmentSettings`). A factor is enrolled
only with proof: a TOTP secret is kept once the user types a first valid code
from it; a passkey once its attestation verifies (:mod:`policy_sso.oidc.passkeys`).

Enrolled factors live in the store (``put_credential``), so every instance
sharing it sees them at once; ``users.yaml``'s ``totp_secret`` stays the
declarative seed and the store wins over it (docs/enrolment.md). A TOTP secret
is stored encrypted (AES-256-GCM under a key derived from the state
directory's ``interaction.key``, which instances sharing a store share) and is
never logged.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy_sso import credentials
from policy_sso.config import User
from policy_sso.sessions.model import AuthEvent, Session

if TYPE_CHECKING:
    from policy_sso.oidc.interaction import Interaction
    from policy_sso.oidc.provider import Provider
    from policy_sso.oidc.sign_in import Page

TOTP_CREDENTIAL = "totp"  # the credential id of a user's (single) enrolled authenticator app
PASSWORD_CREDENTIAL = "password"  # the credential id of a password set at run time  # noqa: S105
TOTP_SECRET_BYTES = 20  # RFC 4226 §4: 160 bits recommended
PENDING_TOTP_TTL = 600  # seconds a shown QR code may be confirmed


@dataclass(frozen=True, slots=True)
class FactorNeeds:
    """What an app requires that the user lacks: the factors that would do, and those they may add now.

    The page words each factor from the message catalogue (``factor.<method>``).
    """

    factors: tuple[str, ...]
    enrol: tuple[str, ...]
    confirm_first: bool = False  # the user may enrol once they confirm with their authenticator app


def may_enrol(p: Provider, session: Session, factor: str, now: int) -> bool:
    """Return whether the tenant lets this session's user enrol ``factor`` now (who, after what, when)."""
    from policy_sso.oidc import passkeys

    rule = p.tenant.settings.enrolment
    if factor not in p.tenant.settings.methods or not rule.allows(session.subject, factor):
        return False
    if factor == "hwk" and not passkeys.usable(p):  # an IP-address issuer cannot be a WebAuthn RP ID
        return False
    return proven_for_factor_change(p, session, now, rule.after)


def proven_for_factor_change(p: Provider, session: Session, now: int,
                             first: tuple[str, ...] | None = None) -> bool:
    """Return whether the session proved, within ``enrolment.within``, what changing the user's factors needs.

    A user who has a second factor must have used one of them: a password
    alone never adds, replaces or removes a factor, or a stolen password
    would become a stolen second factor (an attacker's authenticator app in
    place of the user's). A user with none needs one of ``first`` (the
    tenant's ``enrolment.after``) to enrol a first factor; None: any method.
    """
    needed = factor_proofs(p, session.subject) or first
    if needed is None:
        return True
    within = p.tenant.settings.enrolment.within
    return any(now - t <= within for m, t in session.methods.items() if m in needed)


def factor_needs(p: Provider, page: Page, interaction: Interaction, now: int) -> FactorNeeds:
    """Return the factors that would meet the app's policy for this session, and which may be enrolled now."""
    from policy_sso.oidc.authorization_flow import resolve
    from policy_sso.oidc.interaction import CONSENT_REASONS, ENROLLABLE_FACTORS

    session = page.session
    assert session is not None
    helps = []
    for m in ENROLLABLE_FACTORS:
        if m not in p.tenant.settings.methods:
            continue
        trial = session.with_event(AuthEvent(m, now), session.id)
        step = resolve(p, page.request, trial, interaction, now)
        if step.kind == "complete" or set(step.decision.codes) <= CONSENT_REASONS:
            helps.append(m)
    enrol = tuple(m for m in helps if may_enrol(p, session, m, now))
    confirm_first = False
    if not enrol and "otp" in enrolled_factors(p, session.subject):
        # a user with an authenticator app adds a passkey once a code from it shows it is them
        confirmed = session.with_event(AuthEvent("otp", now), session.id)
        confirm_first = any(may_enrol(p, confirmed, m, now) for m in helps)
    return FactorNeeds(tuple(helps), enrol, confirm_first)


# --- TOTP ---------------------------------------------------------------------------------------

def _cipher(p: Provider) -> AESGCM:
    # a key of its own, derived from the interaction key every instance sharing the store shares
    return AESGCM(bytes.fromhex(p.codec.tag("credential-encryption", "totp-secret aes-256-gcm")))


def seal_secret(p: Provider, subject: str, secret: str) -> str:
    """Return a TOTP secret encrypted for the store, bound to its subject (the AEAD's associated data)."""
    nonce = os.urandom(12)
    sealed = _cipher(p).encrypt(nonce, secret.encode(), subject.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def open_secret(p: Provider, subject: str, sealed: str) -> str | None:
    """Return the TOTP secret a stored value holds, or None when it does not open (another key, tampered)."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return _cipher(p).decrypt(raw[:12], raw[12:], subject.encode()).decode()
    except Exception:  # any failure (another key, tampered, not base64) means no usable secret
        return None


def new_totp_secret() -> str:
    """Return a new base32 TOTP secret (RFC 4226 §4: 160 bits)."""
    return base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode().rstrip("=")


def provisioning_uri(p: Provider, username: str, secret: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from the QR code (Key Uri Format)."""
    return totp_uri(p.issuer, username, secret)


def totp_uri(issuer_url: str, username: str, secret: str) -> str:
    """Return the otpauth:// URI of a TOTP secret for ``username`` at the provider ``issuer_url``.

    The app shows the issuer's host name: the Key Uri Format separates issuer
    and account with a colon, so neither may hold one (a port would).
    """
    import urllib.parse

    issuer = urllib.parse.urlsplit(issuer_url).hostname or issuer_url.replace(":", " ")
    label = urllib.parse.quote(f"{issuer}:{username.replace(':', ' ')}")
    query = urllib.parse.urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                                    "digits": "6", "period": "30"})
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri: str) -> str:
    """Return an inline SVG QR code of ``uri`` (segno; no external image request)."""
    import io

    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False, svgns=True)
    return out.getvalue().decode()


def totp_secret_of(p: Provider, subject: str) -> str | None:
    """Return the user's TOTP secret: the one enrolled in the store, else users.yaml's seed.

    None when the tenant does not accept ``otp`` (tenant.yaml ``methods``): no code then signs in.
    """
    if "otp" not in p.tenant.settings.methods:
        return None
    record = p.store.credentials_of(subject).get(TOTP_CREDENTIAL)
    if record is not None:
        return open_secret(p, subject, str(record.get("sealed", "")))
    return p.totp_secrets.get(subject)


def has_totp(p: Provider, subject: str) -> bool:
    """Return whether the user has an authenticator app (enrolled, or seeded in users.yaml)."""
    return subject in p.totp_secrets or TOTP_CREDENTIAL in p.store.credentials_of(subject)


def confirm_totp(p: Provider, session: Session, secret: str, code: str, now: int) -> bool:
    """Store ``secret`` as the user's authenticator app when ``code`` is valid for it; return whether it was.

    The first code proves the app holds the secret (as Keycloak's OTP setup asks).
    """
    code = code.strip().replace(" ", "")
    if not credentials.verify_totp(secret, code, now):
        return False
    record: dict[str, Any] = {"kind": "totp", "sealed": seal_secret(p, session.subject, secret),
                              "created_at": now, "label": "Authenticator app"}
    p.store.put_credential(session.subject, TOTP_CREDENTIAL, record)
    p.audit.record("factor.enrolled", now, outcome="success", subject=session.subject,
                   session_id=session.id, factor="otp")  # never the secret
    return True


def _factors_held(p: Provider, subject: str) -> tuple[bool, list[dict[str, Any]]]:
    """Return whether the user has an authenticator app, and their passkeys: those the tenant accepts.

    One read of the user's credentials. A factor the tenant does not accept
    could never be presented, so it does not count.
    """
    methods = p.tenant.settings.methods
    held = p.store.credentials_of(subject)
    totp = "otp" in methods and (subject in p.totp_secrets or TOTP_CREDENTIAL in held)
    keys = [r for r in held.values() if r.get("kind") == "passkey"] if "hwk" in methods else []
    return totp, keys


def enrolled_factors(p: Provider, subject: str) -> tuple[str, ...]:
    """Return the second factors this user has and the tenant accepts (``otp``, ``hwk``), in that order."""
    totp, keys = _factors_held(p, subject)
    return (("otp",) if totp else ()) + (("hwk",) if keys else ())


def factor_proofs(p: Provider, subject: str) -> frozenset[str]:
    """Return the methods a use of one of the user's second factors puts in a session.

    ``otp`` for an authenticator app; a passkey proves ``hwk`` when it is
    bound to its device and ``swk`` when it is synced (``passkeys.amr_of``).
    Only factors the tenant accepts count: asking for one it does not would
    lock the user out.
    """
    totp, keys = _factors_held(p, subject)
    return frozenset({"otp"} if totp else ()) | {"swk" if r.get("synced") else "hwk" for r in keys}


# --- passwords set at run time ------------------------------------------------------------------

def password_hash_of(p: Provider, user: User) -> str | None:
    """Return the user's password hash: the one set at run time, unless users.yaml changed since.

    A hash set on /account or through the admin API is stored with the
    users.yaml hash it replaced; when users.yaml now holds another hash, an
    author changed it later, and users.yaml wins (the later change wins).
    None when the tenant does not accept ``pwd`` (tenant.yaml ``methods``):
    no password then signs in (checked as an unknown user's, one hash).
    """
    if "pwd" not in p.tenant.settings.methods:
        return None
    record = p.store.credentials_of(user.sub).get(PASSWORD_CREDENTIAL)
    # as users.yaml reads now: a store found to have lost its records re-reads it (Provider.build)
    user = p.user(user.sub) or user
    if record is not None and record.get("replaces") == user.password_hash and record.get("hash"):
        return str(record["hash"])
    return user.password_hash


def set_password_hash(p: Provider, subject: str, new_hash: str, now: int) -> None:
    """Store a new password hash for ``subject``, noting the users.yaml hash it replaces."""
    user = p.user(subject)
    seed = user.password_hash if user else None
    p.store.put_credential(subject, PASSWORD_CREDENTIAL, {"kind": "password", "hash": new_hash,
                                                          "replaces": seed, "set_at": now})


def seal_pending(p: Provider, subject: str, secret: str, now: int) -> str:
    """Return a shown, not yet confirmed secret sealed for the form (with when it was shown)."""
    return seal_secret(p, subject, f"{now}:{secret}")


def open_pending(p: Provider, subject: str, sealed: str, now: int) -> str | None:
    """Return the secret a form's sealed value holds while it is fresh, else None."""
    opened = open_secret(p, subject, sealed)
    if opened is None or ":" not in opened:
        return None
    shown, _, secret = opened.partition(":")
    return secret if shown.isdigit() and 0 <= now - int(shown) <= PENDING_TOTP_TTL else None
