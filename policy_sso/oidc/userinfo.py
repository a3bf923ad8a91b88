"""Bearer access tokens at the resource endpoints (RFC 6750, RFC 9068 §4) and UserInfo (OIDC Core §5.3)."""

from __future__ import annotations

from typing import Any

from policy_sso.errors import InvalidRequest, InvalidToken, OAuthError
from policy_sso.oidc import tokens
from policy_sso.oidc.claims import user_claims
from policy_sso.oidc.credential_change import token_revoked
from policy_sso.oidc.provider import REVOKED_ACCESS_TOKENS, Provider

REALM = 'Bearer realm="policy-sso"'


def bearer_challenge(err: OAuthError | None = None) -> dict[str, str]:
    """Return the WWW-Authenticate header for a bearer error (RFC 6750 §3)."""
    if err is None:
        return {"WWW-Authenticate": REALM}
    description = err.description.replace('"', "'")
    return {"WWW-Authenticate": f'{REALM}, error="{err.error}", error_description="{description}"'}


def bearer_token(authorization: str | None, form_token: str | None) -> str:
    """Return the access token from the Authorization header or the form body (RFC 6750 §2.1-2.2)."""
    header_token = None
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            err = InvalidRequest("the Authorization header is not a Bearer token")
            err.headers = bearer_challenge(err)
            raise err
        header_token = value.strip()
    if header_token and form_token:
        # RFC 6750 §2: a client MUST NOT use more than one method to transmit the token
        err = InvalidRequest("send the access token once, not in the header and the body")
        err.headers = bearer_challenge(err)
        raise err
    token = header_token or form_token
    if not token:
        # RFC 6750 §3.1: no error code when the request carries no authentication
        raise InvalidToken("an access token is required", headers=bearer_challenge())
    return token


def verify_bearer(p: Provider, token: str, now: int) -> dict[str, Any]:
    """Return a live access token's claims; raise InvalidToken (401 with a challenge)."""
    try:
        claims = tokens.verify_access_token(p.keyring, token, p.issuer, now)
    except Exception:
        claims = None
    if (not claims or p.store.is_jti_used(REVOKED_ACCESS_TOKENS, str(claims.get("jti")), now)
            or token_revoked(p, claims, now)):  # the user's password changed since (issue 14)
        err = InvalidToken("the access token is invalid, expired or revoked")
        err.headers = bearer_challenge(err)
        raise err
    return claims


def userinfo(p: Provider, claims: dict[str, Any]) -> dict[str, Any]:
    """Return the UserInfo claims for a verified access token (OIDC Core §5.3.2)."""
    scopes = str(claims.get("scope", "")).split()
    user = p.user(str(claims.get("sub")))
    if "openid" not in scopes or user is None:
        err = OAuthError("the access token does not grant access to UserInfo",
                         error="insufficient_scope", status=403)
        err.headers = bearer_challenge(err)
        raise err
    return user_claims(user, scopes)
