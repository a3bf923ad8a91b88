"""login_hint_token: a trusted application vouches for a user (SPEC §5, the Authway seed).

The token is a JWT signed with the key and the one algorithm a policy's
``trust login_hint_token`` block configures. Every check names what failed;
the ``jti`` is recorded last, so a refused token never consumes it and
changes nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from policy_sso.config import SecretRef
from policy_sso.errors import InvalidRequest, PolicySSOError
from policy_sso.model import TrustedIssuer
from policy_sso.sessions.store import Store
from policy_sso.validate import HMAC_ALGS, SUPPORTED_ALGS

_UNVERIFIED = {"verify_signature": False, "verify_exp": False, "verify_iat": False, "verify_nbf": False,
               "verify_aud": False, "verify_iss": False}
_NO_CLAIM_CHECKS = {"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                    "verify_iss": False}


@dataclass(frozen=True)
class HintResult:
    """A valid hint: who it names and what authentication it proves."""

    subject: str
    amr: tuple[str, ...]
    issuer: str
    jti: str


def _verification_key(alg: str, data: bytes) -> Any:
    """Return the key pyjwt verifies ``alg`` with: the secret bytes, or a public key object."""
    if alg in HMAC_ALGS:
        return data
    try:
        return load_pem_public_key(data)
    except ValueError:
        return load_pem_private_key(data, password=None).public_key()


def _signing_key(alg: str, data: bytes) -> Any:
    return data if alg in HMAC_ALGS else load_pem_private_key(data, password=None)


class HintVerifier:
    """Verifies login_hint_tokens from the issuers one policy trusts (keys read once, here)."""

    def __init__(self, issuers: Iterable[TrustedIssuer], base_dir: Path, provider_issuer: str,
                 skew: int = 30) -> None:
        self.provider_issuer = provider_issuer
        self.skew = skew
        self._trusted: dict[str, tuple[TrustedIssuer, Any]] = {}
        for trusted in issuers:
            if trusted.key is None or trusted.alg not in SUPPORTED_ALGS:
                raise PolicySSOError(f"trusted issuer {trusted.issuer}: no usable key or alg")
            data = SecretRef(trusted.key.source, trusted.key.name).read(base_dir)
            if not data:
                raise PolicySSOError(f"trusted issuer {trusted.issuer}: key {trusted.key.source} "
                                     f"{trusted.key.name} is not available")
            self._trusted[trusted.issuer] = (trusted, _verification_key(trusted.alg, data))

    @property
    def issuers(self) -> tuple[str, ...]:
        """Return the trusted issuers."""
        return tuple(self._trusted)

    def verify(self, token: str, *, now: int, store: Store,
               user_exists: Callable[[str], bool]) -> HintResult:
        """Return what a valid hint proves; raise InvalidRequest naming the failed check."""
        try:
            header = jwt.get_unverified_header(token)
            peeked = jwt.decode(token, options=_UNVERIFIED)
        except jwt.PyJWTError:
            raise InvalidRequest("login_hint_token is not a signed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidRequest("login_hint_token: alg none is never accepted")
        issuer = peeked.get("iss")
        if not self._trusted:
            raise InvalidRequest("login_hint_token: this client's policy trusts no issuer")
        if not isinstance(issuer, str) or issuer not in self._trusted:
            raise InvalidRequest(
                f"login_hint_token: issuer {issuer!r} is not trusted by this client's policy")
        trusted, key = self._trusted[issuer]
        if alg != trusted.alg:
            raise InvalidRequest(f"login_hint_token: alg {alg} is not the configured {trusted.alg}")
        try:
            claims = jwt.decode(token, key, algorithms=[trusted.alg], options=_NO_CLAIM_CHECKS)
        except jwt.PyJWTError:
            raise InvalidRequest("login_hint_token: the signature is invalid") from None
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.provider_issuer not in audiences:
            raise InvalidRequest("login_hint_token: aud is not this provider's issuer")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidRequest("login_hint_token: sub is missing")
        if not user_exists(subject):
            raise InvalidRequest("login_hint_token: sub does not name a known user")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidRequest("login_hint_token: iat and exp are required")
        if iat > now + self.skew:
            raise InvalidRequest("login_hint_token: not yet valid (iat is in the future)")
        if now >= exp + self.skew:
            raise InvalidRequest("login_hint_token: expired")
        if exp - iat > trusted.max_lifetime:
            raise InvalidRequest(f"login_hint_token: lifetime {exp - iat}s exceeds the allowed "
                                 f"{trusted.max_lifetime}s")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidRequest("login_hint_token: jti is required")
        if not store.use_jti(f"hint:{issuer}", jti, exp + self.skew, now):
            raise InvalidRequest("login_hint_token: jti was already used (replay)")
        return HintResult(subject, trusted.amr, issuer, jti)


def mint_hint_token(key: bytes, alg: str, *, issuer: str, audience: str, subject: str, lifetime: int,
                    now: int, jti: str | None = None) -> str:
    """Return a login_hint_token (an HMAC secret, or a private key PEM for RS/PS/ES/EdDSA)."""
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"unsupported alg {alg!r}")
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime,
              "jti": jti or secrets.token_urlsafe(16)}
    return jwt.encode(claims, _signing_key(alg, key), algorithm=alg)
