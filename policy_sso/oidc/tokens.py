"""ID tokens (OIDC Core §2, §3.1.3.6, §3.3.2.11) and JWT access tokens (RFC 9068), minted and verified.

Time is an argument: claims are checked against the ``now`` the caller
passes, never against the wall clock inside a library.

Each kind of token carries its own ``typ`` (``JWT`` for ID tokens, ``at+jwt``
for access tokens, ``logout+jwt`` for logout tokens) and each verifier
accepts only its own, so a token signed by this provider for one purpose is
never accepted for another (RFC 8725 §3.11, RFC 9068 §4).
"""

from __future__ import annotations

import hashlib
from typing import Any

import jwt

from policy_sso import b64url
from policy_sso.errors import InvalidToken
from policy_sso.oidc.keys import KeyRing

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068 §2.1 media type, not a secret
ID_TOKEN_TYP = "JWT"  # noqa: S105 - the ID token's JOSE type, not a secret
_HASH_OF_ALG = {"RS256": hashlib.sha256, "ES256": hashlib.sha256, "PS256": hashlib.sha256,
                # OIDC Core §3.1.3.6 says "the hash algorithm used in the alg Header"; EdDSA names
                # none, and Ed25519 hashes with SHA-512 inside, so at_hash/c_hash use SHA-512
                # (OpenID Core errata set 2; what node-oidc-provider and Authlib do)
                "EdDSA": hashlib.sha512}
# an access token's private claim: when the latest second factor of its amr was presented
SECOND_FACTOR_TIME = "second_factor_time"
_NO_TIME_CHECKS = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}


def half_hash(value: str, alg: str) -> str:
    """Return at_hash/c_hash: base64url of the left half of the alg's hash of ``value`` (§3.3.2.11)."""
    digest = _HASH_OF_ALG[alg](value.encode("ascii")).digest()
    return b64url.encode(digest[: len(digest) // 2])


def mint_id_token(keyring: KeyRing, *, issuer: str, subject: str, audience: str, auth_time: int | None,
                  nonce: str | None, acr: str | None, amr: list[str] | None, sid: str | None, now: int,
                  lifetime: int, alg: str = "RS256", access_token: str | None = None,
                  code: str | None = None, extra_claims: dict[str, Any] | None = None) -> str:
    """Return a signed ID token (OIDC Core §2); at_hash and c_hash when given the token and code (§3.3.2.11).

    ``extra_claims`` (profile claims, ``azp``…) never override the claims
    this function sets.
    """
    claims: dict[str, Any] = {**(extra_claims or {}), "iss": issuer, "sub": subject, "aud": audience,
                              "iat": now, "exp": now + lifetime}
    optional = {"auth_time": auth_time, "nonce": nonce, "acr": acr, "amr": list(amr) if amr else None,
                "sid": sid}
    claims.update({k: v for k, v in optional.items() if v is not None})
    if access_token is not None:
        claims["at_hash"] = half_hash(access_token, alg)
    if code is not None:
        claims["c_hash"] = half_hash(code, alg)
    return keyring.sign(claims, alg, typ=ID_TOKEN_TYP)


def mint_access_token(keyring: KeyRing, *, issuer: str, subject: str, client_id: str, scope: str,
                      now: int, lifetime: int, jti: str, auth_time: int | None = None,
                      acr: str | None = None, amr: list[str] | None = None, sid: str | None = None,
                      audience: str | None = None, alg: str = "RS256",
                      userinfo_claims: tuple[str, ...] = (), jkt: str | None = None,
                      second_factor_time: int | None = None) -> str:
    """Return an RFC 9068 access token: typ at+jwt (§2.1), iss, exp, aud, sub, client_id, iat, jti (§2.2).

    ``aud`` is the provider itself (its UserInfo endpoint) unless
    ``audience`` names a resource; ``auth_time``, ``acr`` and ``amr`` are
    added when the grant has them (§2.2.1). ``userinfo_claims`` names the
    claims the ``claims`` parameter asked UserInfo for (OIDC Core §5.5);
    ``jkt`` binds the token to a DPoP key (``cnf.jkt``, RFC 9449 §6.1).
    ``second_factor_time`` is when the latest second factor in ``amr`` was
    presented (``auth_time`` is the latest authentication of any kind): a
    resource server's ``require mfa within`` is judged by it.
    """
    claims: dict[str, Any] = {"iss": issuer, "exp": now + lifetime, "aud": audience or issuer,
                              "sub": subject, "client_id": client_id, "iat": now, "jti": jti,
                              "scope": scope}
    optional = {"auth_time": auth_time, "acr": acr, "amr": list(amr) if amr else None, "sid": sid}
    claims.update({k: v for k, v in optional.items() if v is not None})
    if userinfo_claims:
        claims["userinfo_claims"] = list(userinfo_claims)
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    if second_factor_time is not None:
        claims[SECOND_FACTOR_TIME] = second_factor_time
    return keyring.sign(claims, alg, typ=ACCESS_TOKEN_TYP)


def verify_access_token(keyring: KeyRing, token: str, issuer: str, now: int,
                        audience: str | None = None) -> dict[str, Any]:
    """Return the claims of a live access token of this issuer; raise InvalidToken (RFC 9068 §4).

    Only ``typ`` at+jwt and only this ring's keys and algorithms are
    accepted; ``iss`` must be ``issuer``, ``aud`` must contain ``audience``
    (the issuer by default) and ``exp`` must be after ``now``.
    """
    try:
        claims = keyring.verify(token, typ=ACCESS_TOKEN_TYP, options=_NO_TIME_CHECKS)
    except jwt.PyJWTError:
        raise InvalidToken("the access token is malformed or its signature is invalid") from None
    if claims.get("iss") != issuer:
        raise InvalidToken("the access token was issued by another issuer")
    if (audience or issuer) not in _audiences(claims):
        raise InvalidToken("the access token is not meant for this resource")
    exp = claims.get("exp")
    if not _is_number(exp) or now >= exp:
        raise InvalidToken("the access token has expired")
    for member in ("sub", "client_id", "jti"):
        if not isinstance(claims.get(member), str):
            raise InvalidToken(f"the access token has no {member}")
    return claims


def verify_id_token_hint(keyring: KeyRing, token: str, issuer: str, now: int) -> dict[str, Any]:
    """Return the claims of an ID token this provider signed, expired or not (OIDC Core §3.1.2.1).

    The signature and ``iss`` are checked against this provider's own keys;
    expiry is not, as the spec allows an expired ID token as a hint
    (RP-Initiated Logout §2 too). The caller checks ``aud`` against the
    client. Access and logout tokens, signed by the same keys, are refused by
    their ``typ``.
    """
    del now  # an expired hint is acceptable; kept for a uniform signature
    try:
        claims = keyring.verify(token, typ=ID_TOKEN_TYP, options=_NO_TIME_CHECKS)
    except jwt.PyJWTError:
        raise InvalidToken("id_token_hint is not an ID token signed by this provider") from None
    if claims.get("iss") != issuer or not isinstance(claims.get("sub"), str):
        raise InvalidToken("id_token_hint was not issued by this provider")
    return claims


def _audiences(claims: dict[str, Any]) -> list[Any]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
