"""Authorization codes (RFC 6749 §4.1.2): the grant sealed into the code, spent once in the store.

A code is ``base64url(nonce ‖ AES-256-GCM-SIV(grant))`` under a key derived
from the state directory's secret (HKDF, its own label), so issuing one
writes nothing and the silent path stays a single session read. The grant
inside names the client, the redirect_uri, the PKCE challenge and the expiry
the token endpoint checks; nothing in it is readable or alterable without the
key. GCM-SIV with a random 96-bit nonce keeps a repeated nonce harmless, so
the key needs no rotation schedule for the number of codes issued.

Redeeming a code records its identifier as used (``Store.use_jti`` in the
``code`` namespace: atomic, shared by every instance, kept until the code
expires), so a code works once. What the first redemption issued, its refresh
family and access-token ``jti``, is derived from the code with the same key,
so a second redemption can revoke it without the store keeping it (RFC 6749
§4.1.2, RFC 9700 §4.5).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from policy_sso import b64url, jsonenc
from policy_sso.oidc.grant import Grant
from policy_sso.sessions.store import token_key

USED_CODES = "code"  # the use_jti namespace of redeemed codes
_VERSION = 1
_AAD = b"policy-sso authorization code v1"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What a code carries: the grant, where it may be redeemed, and until when."""

    grant: Grant
    redirect_uri: str
    code_challenge: str | None
    expires_at: int
    dpop_jkt: str | None = None  # RFC 9449 §10: the DPoP key the code may be redeemed with


class CodeSealer:
    """Seals grants into codes and opens them; derives what a code's redemption issues."""

    def __init__(self, secret: bytes) -> None:
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=b"policy-sso",
                    info=b"authorization codes v1").derive(secret)
        self._aead = AESGCMSIV(keys[:32])
        self._mac_key = keys[32:]
        # HMAC-SHA256 keyed once: each use copies it (no new OpenSSL MAC set up per request)
        self._mac = hmac.new(self._mac_key, digestmod=hashlib.sha256)

    def seal(self, sealed: CodeGrant) -> str:
        """Return the code carrying ``sealed``."""
        g = sealed.grant
        plain = jsonenc.dumps([
            _VERSION, sealed.expires_at, g.subject, g.client_id, g.scope, g.auth_time, g.acr, g.amr, g.sid,
            g.nonce, sealed.redirect_uri, sealed.code_challenge,
            *((g.userinfo_claims, g.id_token_claims, sealed.dpop_jkt, g.second_factor_time)
              if g.userinfo_claims or g.id_token_claims or sealed.dpop_jkt or g.second_factor_time
              else ())])
        nonce = _NONCES.next()
        return b64url.encode(nonce + self._aead.encrypt(nonce, plain, _AAD))

    def open(self, code: str, now: int) -> CodeGrant | None:
        """Return the grant a code carries, or None for a code this provider did not seal or that expired."""
        raw = b64url.canonical_decode(code)  # one spelling: one store identifier
        if raw is None:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        except (ValueError, InvalidTag):
            return None
        fields = json.loads(plain)  # authenticated: this provider wrote it
        if fields[0] != _VERSION or now >= fields[1]:
            return None
        (expires_at, subject, client_id, scope, auth_time, acr, amr, sid, nonce, redirect_uri,
         challenge) = fields[1:12]
        # the claims parameter's names ride along only when a request had one (OIDC Core §5.5),
        # and so do the DPoP key binding of RFC 9449 §10 and the second factor's time
        userinfo, id_token, dpop_jkt, second_factor_time = (
            [*fields[12:16], None][:4] if len(fields) > 12 else ((), (), None, None))
        return CodeGrant(Grant(subject, client_id, scope, auth_time, acr, tuple(amr), sid, nonce,
                               tuple(userinfo), tuple(id_token), second_factor_time),
                         redirect_uri, challenge, expires_at, dpop_jkt)

    def derive_key(self, label: bytes) -> bytes:
        """Return a 32-byte key for another sealed artifact (HKDF of this sealer's key, ``label`` its own)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"policy-sso", info=label)
        return hkdf.derive(self._mac_key)

    def used_key(self, code: str, sealed: CodeGrant) -> str:
        """Return the identifier of an opened code in the store: its expiry first, so the index appends."""
        return f"{sealed.expires_at:011d}{token_key(code)}"

    def issued(self, code: str) -> tuple[str, str]:
        """Return the access-token ``jti`` and refresh ``family`` a code's redemption issues.

        Derived from the code (HMAC), so they are the same on every call: a
        second redemption finds what the first issued without the store
        keeping it.
        """
        keyed = self._mac.copy()
        keyed.update(code.encode())
        mac = keyed.digest()
        return b64url.encode(mac[:16]), b64url.encode(mac[16:])


class _Nonces:
    """Unique 96-bit nonces without a system call each: a random per-process prefix and a counter.

    ``os.urandom`` releases the GIL, and under load every release is a
    handover between the server's threads; a counter costs nothing. The
    prefix is drawn again in a forked child, so parent and child never share
    a sequence (and with GCM-SIV a repeated nonce would only reveal that two
    codes were identical).
    """

    def __init__(self) -> None:
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._prefix = os.urandom(4)
        self._counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def next(self) -> bytes:
        """Return a nonce never returned before by this process."""
        return self._prefix + next(self._counter).to_bytes(8, "big")  # next() is atomic under the GIL


_NONCES = _Nonces()  # one sequence per process: unique across every key too
