"""Passkeys (W3C WebAuthn Level 3) with the ``webauthn`` package: registration and sign-in.

The relying party is the issuer, exactly: the RP ID is the issuer's host and
the only accepted origin is the issuer's scheme, host and port (WebAuthn
§7.1 steps 9 and 13, §7.2 steps 12 and 15). An IP address cannot be an RP ID,
so passkeys need an issuer with a host name (``localhost`` for development).

Each ceremony's challenge travels to the page and back in a state value
MAC'd with the interaction key, and is spent in the store when it comes back
(``use_jti``): a replayed response is refused on every instance. Credentials
live in the store (``put_credential``, kind ``passkey``) with their public key
and sign count; a sign count that does not grow is refused (§7.2 step 21)
and the count is advanced by compare-and-set, so two racing uses of one
count cannot both pass.

The amr recorded (RFC 8176 §2) follows the authenticator data:

- ``hwk`` when the credential is device-bound (backup eligibility unset:
  the key cannot leave the authenticator), ``swk`` when it is a synced
  passkey (backup eligible, §6.1 flag BE);
- plus ``pin`` when the authenticator verified the user (flag UV: a PIN,
  pattern or biometric unlocked the key; RFC 8176 ``pin`` is "a PIN or
  pattern ... that a user enters to unlock a key on the device").

So a user-verifying device-bound passkey alone is two factors (``hwk`` +
``pin``: possession and knowledge, amr ``mfa``) and meets the demo's
``urn:policy-sso:loa:3``; password + TOTP never yields ``hwk``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import webauthn
from webauthn.helpers import exceptions as wa_errors
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from policy_sso import b64url
from policy_sso.errors import InvalidRequest, PolicySSOError
from policy_sso.messages import Message
from policy_sso.oidc.credential_change import issued_before_store_loss
from policy_sso.oidc.provider import Provider
from policy_sso.request import loads_json
from policy_sso.sessions.model import AuthEvent, Device, Session

CEREMONY_TTL = 300  # seconds a page's challenge may be answered (WebAuthn §15.1: the timeout)
SPENT_CHALLENGES = "webauthn"  # the use_jti namespace of answered challenges
CREDENTIAL_PREFIX = "pk:"


class PasskeyRefused(PolicySSOError):
    """A WebAuthn response that does not verify; the message is for the person."""

    @property
    def message(self) -> Message:
        """Return what the page tells the person (a catalogue message)."""
        return self.args[0]


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What a page needs to run a ceremony: the options for the browser and the state to send back."""

    options: str  # PublicKeyCredential{Creation,Request}Options as JSON (WebAuthn §5.4, §5.5)
    state: str


def relying_party(p: Provider) -> tuple[str, str]:
    """Return (RP ID, origin) from the issuer: its host, and its scheme://host[:port]."""
    url = urllib.parse.urlsplit(p.issuer)
    return url.hostname or "", f"{url.scheme}://{url.netloc}"


def usable(p: Provider) -> bool:
    """Return whether the tenant accepts passkeys (``hwk`` in methods) and its issuer can be an RP ID."""
    rp_id, _ = relying_party(p)
    return "hwk" in p.tenant.settings.methods and bool(rp_id) and not _is_ip(rp_id)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _seal(p: Provider, data: dict[str, Any]) -> str:
    payload = b64url.encode(json.dumps(data, separators=(",", ":")).encode())
    return f"{payload}.{p.codec.tag('webauthn', payload)}"


def _open(p: Provider, state: str, purpose: str, now: int) -> dict[str, Any]:
    payload, _, tag = state.partition(".")
    if not payload or not hmac.compare_digest(tag.encode(), p.codec.tag("webauthn", payload).encode()):
        raise PasskeyRefused(Message("message.passkey_foreign_page"))
    data = json.loads(b64url.decode(payload))
    if data.get("p") != purpose or not data.get("t", 0) <= now < data.get("t", 0) + CEREMONY_TTL:
        raise PasskeyRefused(Message("message.passkey_expired"))
    # WebAuthn §13.4.3: a challenge is answered once, on every instance sharing the store
    if not p.store.use_jti(SPENT_CHALLENGES, data["c"], data["t"] + CEREMONY_TTL, now=now):
        raise PasskeyRefused(Message("message.passkey_replayed"))
    if issued_before_store_loss(p, data["t"]):  # its answer's record may have gone with the store's
        raise PasskeyRefused(Message("message.passkey_expired"))
    return data


def passkeys_of(p: Provider, subject: str) -> dict[str, dict[str, Any]]:
    """Return the user's passkeys by store id."""
    return {cid: r for cid, r in p.store.credentials_of(subject).items() if r.get("kind") == "passkey"}


def registration(p: Provider, session: Session, username: str, now: int) -> Ceremony:
    """Return the options to create a discoverable, user-verifying passkey for the session's user."""
    rp_id, _ = relying_party(p)
    challenge = secrets.token_bytes(32)
    options = webauthn.generate_registration_options(
        rp_id=rp_id, rp_name=rp_id, user_id=session.subject.encode(), user_name=username,
        user_display_name=username, challenge=challenge, timeout=CEREMONY_TTL * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=b64url.decode(r["credential_id"]))
                             for r in passkeys_of(p, session.subject).values()])
    state = _seal(p, {"p": "register", "c": b64url.encode(challenge), "s": session.subject, "t": now})
    return Ceremony(webauthn.options_to_json(options), state)


def register(p: Provider, session: Session, response: str, state: str, now: int, *,
             label: str = "Passkey") -> str:
    """Verify a registration response and store the passkey; return its store id. Raise PasskeyRefused."""
    data = _open(p, state, "register", now)
    if data.get("s") != session.subject:
        raise PasskeyRefused(Message("message.passkey_other_account_request"))
    rp_id, origin = relying_party(p)
    try:
        verified = webauthn.verify_registration_response(
            credential=response, expected_challenge=b64url.decode(data["c"]), expected_rp_id=rp_id,
            expected_origin=origin, require_user_verification=True)
    except (wa_errors.InvalidRegistrationResponse, wa_errors.InvalidJSONStructure, ValueError, KeyError,
            TypeError) as err:
        raise PasskeyRefused(Message("message.passkey_not_verified")) from err
    # §7.1 step 26 asks that a credential id be registered once: credentials are looked up by the
    # (user handle, id) pair, so an id registered under two accounts signs in to neither other one
    store_id = CREDENTIAL_PREFIX + b64url.encode(verified.credential_id)
    synced = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    p.store.put_credential(session.subject, store_id, {
        "kind": "passkey", "label": label[:60] or "Passkey", "created_at": now,
        "credential_id": b64url.encode(verified.credential_id),
        "public_key": b64url.encode(verified.credential_public_key),
        "sign_count": verified.sign_count, "synced": synced, "aaguid": verified.aaguid})
    p.audit.record("factor.enrolled", now, outcome="success", subject=session.subject,
                   session_id=session.id, factor="swk" if synced else "hwk")
    return store_id


def authentication(p: Provider, now: int, subject: str | None = None) -> Ceremony:
    """Return the options to sign in with a passkey: any discoverable one, or ``subject``'s own."""
    rp_id, _ = relying_party(p)
    challenge = secrets.token_bytes(32)
    allow = ([PublicKeyCredentialDescriptor(id=b64url.decode(r["credential_id"]))
              for r in passkeys_of(p, subject).values()] if subject else [])
    options = webauthn.generate_authentication_options(
        rp_id=rp_id, challenge=challenge, timeout=CEREMONY_TTL * 1000, allow_credentials=allow,
        user_verification=UserVerificationRequirement.PREFERRED)
    state = _seal(p, {"p": "sign_in", "c": b64url.encode(challenge), "s": subject or "", "t": now})
    return Ceremony(webauthn.options_to_json(options), state)


def amr_of(user_verified: bool, synced: bool) -> tuple[str, ...]:
    """Return the RFC 8176 methods a passkey assertion proves (see the module docstring)."""
    return ("swk" if synced else "hwk", *(("pin",) if user_verified else ()))


def verify(p: Provider, response: str, state: str, now: int) -> tuple[str, tuple[AuthEvent, ...]]:
    """Verify a sign-in assertion; return (subject, the auth events it proves). Raise PasskeyRefused.

    Refused: a state not from this server, expired or replayed; an unknown
    credential or one of another user; a wrong origin or RP ID; a bad
    signature; a sign count that did not grow.
    """
    data = _open(p, state, "sign_in", now)
    try:
        body = loads_json(response, "the passkey's answer")  # bounded depth, no lone surrogates
        raw_id = str(body["id"])
        handle = body.get("response", {}).get("userHandle")
        subject = b64url.decode(handle).decode(errors="replace") if handle else data.get("s", "")
    except (InvalidRequest, KeyError, TypeError, AttributeError, ValueError):  # binascii.Error: ValueError
        raise PasskeyRefused(Message("message.passkey_unreadable")) from None
    if data.get("s") and subject != data["s"]:
        raise PasskeyRefused(Message("message.passkey_other_account"))
    store_id = CREDENTIAL_PREFIX + raw_id
    record = passkeys_of(p, subject).get(store_id) if subject in p.tenant.users else None
    if record is None:
        raise PasskeyRefused(Message("message.passkey_unknown"))
    rp_id, origin = relying_party(p)
    try:
        verified = webauthn.verify_authentication_response(
            credential=response, expected_challenge=b64url.decode(data["c"]), expected_rp_id=rp_id,
            expected_origin=origin, credential_public_key=b64url.decode(record["public_key"]),
            credential_current_sign_count=int(record["sign_count"]))
    except (wa_errors.InvalidAuthenticationResponse, wa_errors.InvalidJSONStructure, ValueError, KeyError,
            TypeError) as err:
        p.audit.record("sign_in.failure", now, outcome="failure", subject=subject, factor="hwk",
                       failure="passkey_not_verified")
        raise PasskeyRefused(Message("message.passkey_not_verified")) from err
    # §7.2 step 21: the count moves on exactly once per count value, on every instance
    if not p.store.replace_credential(subject, store_id, record,
                                      {**record, "sign_count": verified.new_sign_count, "used_at": now}):
        raise PasskeyRefused(Message("message.passkey_raced"))
    methods = amr_of(verified.user_verified, bool(record.get("synced")))
    p.audit.record("sign_in.success", now, outcome="success", subject=subject, factor=methods[0])
    return subject, tuple(AuthEvent(m, now) for m in methods)


def sign_in_with_passkey(p: Provider, session_id: str | None, response: str, state: str, now: int, *,
                         client_id: str | None = None, address: str = "-",
                         device: Device | None = None) -> tuple[str | None, str]:
    """Return (the session id after a passkey sign-in, "") or (None, a message for the page).

    As a password sign-in does: the address's attempt limit first; the
    browser's session is re-authenticated in place when it is the same
    user's (a second factor), else a new session starts (no fixation).
    """
    from policy_sso.oidc.provider import end_session, reusable_for, start_session
    from policy_sso.ratelimit import ADDRESS
    from policy_sso.sessions.model import REPLACED_BY_SIGN_IN, new_session, new_session_id

    p.limiter.check("login", ADDRESS, address, now=now)
    try:
        subject, events = verify(p, response, state, now)
    except PasskeyRefused as refused:
        return None, refused.message
    current = p.store.get_session(session_id, now) if session_id else None
    if current is not None and current.subject == subject and (
            client_id is None or reusable_for(p, current, client_id)):
        moved: Session | None = current
        for event in events:
            moved = p.store.reauthenticate(moved.id, event, new_session_id(), now, device) if moved else None
        if moved is not None:
            return moved.id, ""
    elif current is not None and current.subject != subject:
        end_session(p, current.id, now, REPLACED_BY_SIGN_IN)
    session = new_session(subject, events, now, client_id, device)
    start_session(p, session, now)
    return session.id, ""
