"""Logout tokens (OIDC Back-Channel Logout 1.0 §2.4)."""

from __future__ import annotations

from typing import Any

from policy_sso.oidc.keys import KeyRing

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP = "logout+jwt"  # noqa: S105 - the §2.4 media type, not a secret
LOGOUT_TOKEN_LIFETIME = 120
# §2.6: the RP validates a logout token as an ID token, so it is signed with the client's
# id_token_signed_response_alg; RS256 is that value's default (OIDC Registration §2).
DEFAULT_ALG = "RS256"


def mint_logout_token(keyring: KeyRing, *, issuer: str, audience: str, subject: str | None = None,
                      sid: str | None = None, now: int, jti: str, alg: str = DEFAULT_ALG) -> str:
    """Return a signed logout token: iss, aud, iat, exp, jti, events, sid and/or sub, never nonce (§2.4).

    ``alg`` is the audience's ID token algorithm (§2.6: validated like an ID token).
    """
    if subject is None and sid is None:
        raise ValueError("a logout token names a sid, a sub, or both (§2.4)")
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "iat": now,
                              "exp": now + LOGOUT_TOKEN_LIFETIME, "jti": jti,
                              "events": {BACKCHANNEL_EVENT: {}}}
    if subject is not None:
        claims["sub"] = subject
    if sid is not None:
        claims["sid"] = sid
    return keyring.sign(claims, alg, typ=LOGOUT_TOKEN_TYP)
