"""login_hint_token: a trusted application vouches for a user (SPEC §5, the Authway seed).

The token is a JWT signed with the key and the one algorithm a policy's
``trust login_hint_token`` block configures. Checks run in this order, each
refusal an ``invalid_request`` whose description names the check:

1. parseable JWS (RFC 7515) with no ``crit`` extension we would ignore (§4.1.11);
2. header ``alg`` is not ``none``;
3. ``iss`` (read unverified only to choose the issuer) is trusted by the policy;
4. ``alg`` is exactly that issuer's configured algorithm (RFC 8725 §3.1: no
   RS256→HS256 confusion);
5. the signature verifies with exactly that issuer's key;
6. ``aud`` contains this provider's issuer;
7. ``sub`` is present and names a known user;
8. ``iat``/``exp`` are present, ``iat`` not in the future, ``exp`` not past
   (both with the clock skew), ``exp`` after ``iat`` and ``exp - iat`` within
   ``max_lifetime``;
9. ``jti`` is present and was never used (recorded in the store).

The ``jti`` is recorded last, so a refused token never consumes it and
changes nothing.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from policy_sso.config import SecretRef
from policy_sso.errors import InvalidRequest, PolicySSOError
from policy_sso.model import TrustedIssuer
from policy_sso.sessions.store import Store
from policy_sso.validate import HMAC_ALGS, SUPPORTED_ALGS

_UNVERIFIED = {"verify_signature": False, "verify_exp": False, "verify_iat": False, "verify_nbf": False,
               "verify_aud": False, "verify_iss": False}
# pyjwt checks only the signature; every claim is checked below, so each refusal names its claim
_NO_CLAIM_CHECKS = {"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                    "verify_iss": False, "verify_sub": False, "verify_jti": False}
_PUBLIC_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RS256": (rsa.RSAPublicKey,), "PS256": (rsa.RSAPublicKey,), "ES256": (ec.EllipticCurvePublicKey,),
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)}
MAX_JTI_LENGTH = 256  # a jti is stored until the token expires: keep what a caller can make us store small


@dataclass(frozen=True)
class HintResult:
    """A valid hint: who it names, what authentication it proves, who vouched, and its spent jti."""

    subject: str
    amr: tuple[str, ...]
    issuer: str
    jti: str


def _verification_key(trusted: TrustedIssuer, data: bytes) -> Any:
    """Return the key pyjwt verifies the issuer's alg with: the secret bytes, or a public key object."""
    alg = trusted.alg
    if alg in HMAC_ALGS:
        if b"-----BEGIN" in data:  # RFC 8725 §3.1: a PEM key must never serve as an HMAC secret
            raise PolicySSOError(f"trusted issuer {trusted.issuer}: alg {alg} needs a shared secret, "
                                 "not a PEM key")
        return data
    try:
        key: Any = load_pem_public_key(data)
    except ValueError:
        try:  # a private key file works too: only its public half is kept
            key = load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError):
            raise PolicySSOError(f"trusted issuer {trusted.issuer}: the key is not a PEM key") from None
    if not isinstance(key, _PUBLIC_KEY_TYPES[alg]) or (
            alg == "ES256" and not isinstance(key.curve, ec.SECP256R1)):
        raise PolicySSOError(f"trusted issuer {trusted.issuer}: the key does not fit alg {alg}")
    return key


def _signing_key(alg: str, data: bytes) -> Any:
    return data if alg in HMAC_ALGS else load_pem_private_key(data, password=None)


def _is_time(value: Any) -> bool:
    """Return whether ``value`` is a NumericDate (RFC 7519 §2): a finite number, not a bool.

    NaN compares false with everything, so a NaN ``iat`` would pass every
    lifetime check; Infinity makes ``int()`` raise.
    """
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class HintVerifier:
    """Verifies login_hint_tokens from the issuers one policy trusts.

    Keys are resolved once, here: an ``env`` key is the variable's value as
    HMAC secret bytes (or a PEM for asymmetric algs), a ``file`` key a PEM
    public key (or secret) path, relative to ``base_dir``. A missing or
    unfitting key raises PolicySSOError now, not on the first request.
    """

    def __init__(self, issuers: Iterable[TrustedIssuer], base_dir: Path | str,
                 provider_issuer: str | None = None, skew: int = 30) -> None:
        self.provider_issuer = provider_issuer
        self.skew = skew
        self._trusted: dict[str, tuple[TrustedIssuer, Any]] = {}
        for trusted in issuers:
            if trusted.key is None or trusted.alg not in SUPPORTED_ALGS:
                raise PolicySSOError(f"trusted issuer {trusted.issuer}: no usable key or alg")
            data = SecretRef(trusted.key.source, trusted.key.name).read(Path(base_dir))
            if not data:
                raise PolicySSOError(f"trusted issuer {trusted.issuer}: key {trusted.key.source} "
                                     f"{trusted.key.name} is not available")
            self._trusted[trusted.issuer] = (trusted, _verification_key(trusted, data))

    @property
    def issuers(self) -> tuple[str, ...]:
        """Return the trusted issuers."""
        return tuple(self._trusted)

    def verify(self, token: str, *, now: int, store: Store,
               user_exists: Callable[[str], bool] | None = None, audience: str | None = None,
               skew: int | None = None, users_exist: Callable[[str], bool] | None = None) -> HintResult:
        """Return what a valid hint proves (SPEC §5); raise InvalidRequest naming the failed check.

        ``audience`` is this provider's issuer (default: the one given at
        construction); ``user_exists`` (or its alias ``users_exist``) says
        whether a subject is a known user; ``skew`` overrides the clock skew.
        """
        exists = user_exists or users_exist
        expected_aud = audience or self.provider_issuer
        if exists is None or expected_aud is None:
            raise TypeError("verify() needs user_exists and an audience (here or at construction)")
        skew = self.skew if skew is None else skew
        trusted, claims = self._verified_claims(token)
        issuer = trusted.issuer
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if expected_aud not in audiences:
            raise InvalidRequest("login_hint_token: aud is not this provider's issuer")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidRequest("login_hint_token: sub is missing")
        if not exists(subject):
            raise InvalidRequest("login_hint_token: sub does not name a known user")
        exp = _check_times(claims, trusted.max_lifetime, now, skew)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise InvalidRequest(f"login_hint_token: jti is required (at most {MAX_JTI_LENGTH} characters)")
        # last: only a token that passed every other check may spend its jti
        if not store.use_jti(f"hint:{issuer}", jti, exp + skew, now):
            raise InvalidRequest("login_hint_token: jti was already used (replay)")
        if int(claims["iat"]) < store.intact_since():  # its jti record may have gone with the store's
            raise InvalidRequest("login_hint_token: issued before this provider's store lost its records; "
                                 "send a new one")
        return HintResult(subject, trusted.amr, issuer, jti)


    def _verified_claims(self, token: str) -> tuple[TrustedIssuer, dict[str, Any]]:
        """Return the trusted issuer and the claims of a token whose alg and signature are that issuer's."""
        try:
            header = jwt.get_unverified_header(token)
            peeked = jwt.decode(token, options=_UNVERIFIED)
        except jwt.PyJWTError:
            raise InvalidRequest("login_hint_token is not a signed JWT") from None
        if "crit" in header:  # RFC 7515 §4.1.11: no extension is understood here, so none may be critical
            raise InvalidRequest("login_hint_token: the crit header is not supported")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidRequest("login_hint_token: alg none is never accepted")
        if not self._trusted:
            raise InvalidRequest("login_hint_token: this client's policy trusts no issuer")
        issuer = peeked.get("iss")
        if not isinstance(issuer, str) or issuer not in self._trusted:
            raise InvalidRequest(
                f"login_hint_token: issuer {str(issuer)[:100]!r} is not trusted by this client's policy")
        trusted, key = self._trusted[issuer]
        if alg != trusted.alg:
            raise InvalidRequest(f"login_hint_token: alg {alg[:20]!r} is not the configured {trusted.alg}")
        try:
            return trusted, jwt.decode(token, key, algorithms=[trusted.alg], options=_NO_CLAIM_CHECKS)
        except jwt.PyJWTError:
            raise InvalidRequest("login_hint_token: the signature is invalid") from None


def _check_times(claims: dict[str, Any], max_lifetime: int, now: int, skew: int) -> int:
    """Return ``exp`` (whole seconds) once iat/exp are present, current and within ``max_lifetime``."""
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _is_time(iat) or not _is_time(exp):
        raise InvalidRequest("login_hint_token: iat and exp are required (finite NumericDate)")
    nbf = claims.get("nbf")
    if nbf is not None and not _is_time(nbf):
        raise InvalidRequest("login_hint_token: nbf is not a finite NumericDate")
    if nbf is not None and nbf > now + skew:
        raise InvalidRequest("login_hint_token: not yet valid (nbf is in the future)")
    if iat > now + skew:
        raise InvalidRequest("login_hint_token: not yet valid (iat is in the future)")
    if now >= exp + skew:
        raise InvalidRequest("login_hint_token: expired")
    if exp <= iat:
        raise InvalidRequest("login_hint_token: exp is not after iat")
    if exp - iat > max_lifetime:
        raise InvalidRequest(f"login_hint_token: lifetime {int(exp - iat)}s exceeds the allowed "
                             f"{max_lifetime}s")
    return int(exp)


def mint_hint_token(key: bytes, alg: str, *, issuer: str, audience: str, subject: str, lifetime: int,
                    now: int, jti: str | None = None) -> str:
    """Return a login_hint_token (SPEC §5) signed with an HMAC secret or a private key PEM (RS/PS/ES/EdDSA).

    For the CLI's ``hint mint`` and tests; ``jti`` is random unless given.
    """
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"unsupported alg {alg!r}: one of {', '.join(sorted(SUPPORTED_ALGS))}")
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime,
              "jti": jti or secrets.token_urlsafe(16)}
    return jwt.encode(claims, _signing_key(alg, key), algorithm=alg)
