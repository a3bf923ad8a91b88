"""WebAuthn verification (policy_sso.oidc.passkeys) against a software authenticator: what it
accepts, the amr it records, and every refusal issue 18 lists (wrong origin, wrong RP ID, a replayed
challenge, a sign count going back, an unknown credential, a credential of another user)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from soft_authenticator import ISSUER, NOW, UV, SoftKey

from policy_sso.audit import AuditLog
from policy_sso.oidc import passkeys
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.memory import MemoryStore
from policy_sso.sessions.model import AuthEvent, new_session
from policy_sso.tenant import Tenant, load_tenant


@pytest.fixture
def provider(demo_dir: Any) -> Provider:
    demo = load_tenant(demo_dir)
    tenant = Tenant(demo.directory, replace(demo.settings, issuer=ISSUER), demo.clients, demo.users,
                    demo.policies, demo.policy_files)
    store = MemoryStore(tenant.settings.lifetime)
    return Provider.build(tenant, store, None, b"k" * 32, AuditLog.disabled())


def registered(p: Provider, subject: str = "u-alice", **kind: bool) -> SoftKey:
    session = new_session(subject, (AuthEvent("pwd", NOW),), NOW)
    p.store.create_session(session)
    key = SoftKey(subject, **kind)
    ceremony = passkeys.registration(p, session, subject, NOW)
    passkeys.register(p, session, key.create(ceremony.options), ceremony.state, NOW)
    return key


def sign_in(p: Provider, key: SoftKey, subject: str | None = None, **response: Any) -> tuple[str, tuple]:
    ceremony = passkeys.authentication(p, NOW, subject)
    return passkeys.verify(p, key.get(ceremony.options, **response), ceremony.state, NOW)


@pytest.mark.parametrize(("kind", "verified", "amr"), [
    ({}, True, ("hwk", "pin")),
    ({}, False, ("hwk",)),
    ({"synced": True}, True, ("swk", "pin")),
], ids=["device-bound-verified", "presence-only", "synced-passkey"])
def test_a_passkey_signs_in_with_the_amr_its_data_shows(provider: Provider, kind: dict, verified: bool,
                                                        amr: tuple) -> None:
    key = registered(provider, **kind)  # registration requires user verification
    if not verified:
        key.flags &= ~UV
    subject, events = sign_in(provider, key)
    assert subject == "u-alice" and tuple(e.method for e in events) == amr


def test_relying_party_is_the_issuer(provider: Provider) -> None:
    assert passkeys.relying_party(provider) == ("localhost", "http://localhost:8080")


@pytest.mark.parametrize("attempt", ["wrong_origin", "wrong_rp_id", "replayed_challenge", "sign_count_back",
                                     "unknown_credential", "another_users_credential",
                                     "another_users_second_factor", "forged_state"])
def test_refused(provider: Provider, attempt: str) -> None:
    key = registered(provider)
    sign_in(provider, key)  # the stored count is now 1
    ceremony = passkeys.authentication(provider, NOW)
    state = ceremony.state
    if attempt == "wrong_origin":
        response = key.get(ceremony.options, origin="http://localhost:8081")
    elif attempt == "wrong_rp_id":
        response = key.get(ceremony.options, rp_id="evil.example")
    elif attempt == "replayed_challenge":
        response = key.get(ceremony.options)
        passkeys.verify(provider, response, state, NOW)
    elif attempt == "sign_count_back":
        key.count = 0  # the next assertion carries 1 again, no more than the stored count
        response = key.get(ceremony.options)
    elif attempt == "unknown_credential":
        response = SoftKey("u-alice").get(ceremony.options)
    elif attempt == "another_users_credential":
        registered(provider, "u-bob")
        response = key.get(ceremony.options, handle="u-bob")  # alice's key claiming to be bob's
    elif attempt == "another_users_second_factor":
        ceremony = passkeys.authentication(provider, NOW, "u-bob")
        state, response = ceremony.state, key.get(ceremony.options)
    else:
        response, state = key.get(ceremony.options), state[:-2] + "xx"
    with pytest.raises(passkeys.PasskeyRefused):
        passkeys.verify(provider, response, state, NOW)


def test_an_expired_ceremony_is_refused(provider: Provider) -> None:
    key = registered(provider)
    ceremony = passkeys.authentication(provider, NOW)
    with pytest.raises(passkeys.PasskeyRefused, match="expired"):
        passkeys.verify(provider, key.get(ceremony.options), ceremony.state, NOW + passkeys.CEREMONY_TTL)
