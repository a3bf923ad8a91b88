"""A software WebAuthn authenticator for the tests: one ES256 credential, 'none' attestation,
flags and a sign counter the test controls."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

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
