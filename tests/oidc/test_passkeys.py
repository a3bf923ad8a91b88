"""WebAuthn verification (policy_sso.oidc.passkeys) against a software authenticator: what it
accepts, the amr it records, and every refusal issue 18 lists (wrong origin, wrong RP ID, a replayed
challenge, a sign count going back, an unknown credential, a credential of another user)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from policy_sso.audit import AuditLog
from policy_sso.oidc import passkeys
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.memory import MemoryStore
from policy_sso.sessions.model import AuthEvent, new_session
from policy_sso.tenant import Tenant, load_tenant

NOW = 1_800_000_000
ISSUER = "http://localhost:8080"
UP, UV, AT, BE = 0x01, 0x04, 0x40, 0x08


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftKey:
    """A software authenticator: one ES256 credential, 'none' attestation, a sign counter."""

    def __init__(self, subject: str, *, uv: bool = True, synced: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.id = os.urandom(16)
        self.subject = subject
        self.count = 0
        self.flags = UP | (UV if uv else 0) | (BE if synced else 0)

    def _auth_data(self, rp_id: str, attested: bool = False) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest() + bytes([self.flags | (AT if attested else 0)])
        data += self.count.to_bytes(4, "big")
        if attested:
            numbers = self.key.public_key().public_numbers()
            cose = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
            data += bytes(16) + len(self.id).to_bytes(2, "big") + self.id + cbor2.dumps(cose)
        return data

    def _client_data(self, kind: str, options: str, origin: str) -> bytes:
        challenge = json.loads(options)["challenge"]
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin,
                           "crossOrigin": False}).encode()

    def create(self, options: str, *, origin: str = ISSUER, rp_id: str = "localhost") -> str:
        client = self._client_data("webauthn.create", options, origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": self._auth_data(rp_id, True)})
        return json.dumps({"id": b64(self.id), "rawId": b64(self.id), "type": "public-key",
                           "response": {"clientDataJSON": b64(client), "attestationObject": b64(attestation),
                                        "transports": ["internal"]},
                           "authenticatorAttachment": "platform", "clientExtensionResults": {}})

    def get(self, options: str, *, origin: str = ISSUER, rp_id: str = "localhost",
            handle: str | None = None) -> str:
        self.count += 1
        client = self._client_data("webauthn.get", options, origin)
        auth = self._auth_data(rp_id)
        signature = self.key.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        return json.dumps({"id": b64(self.id), "rawId": b64(self.id), "type": "public-key",
                           "response": {"clientDataJSON": b64(client), "authenticatorData": b64(auth),
                                        "signature": b64(signature),
                                        "userHandle": b64((handle or self.subject).encode())},
                           "clientExtensionResults": {}})


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
