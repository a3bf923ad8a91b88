"""Access tokens at resource endpoints (RFC 6750, RFC 9068 §4, RFC 9449 §7) and UserInfo (OIDC Core §5.3)."""

from __future__ import annotations

from typing import Any

from policy_sso.errors import InvalidRequest, InvalidToken, OAuthError
from policy_sso.oidc import dpop, tokens
from policy_sso.oidc.claims import requested_claims, user_claims
from policy_sso.oidc.credential_change import token_revoked
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.store import REVOKED_ACCESS_TOKENS

REALM = 'Bearer realm="policy-sso"'


def bearer_challenge(err: OAuthError | None = None) -> dict[str, str]:
    """Return the WWW-Authenticate header for a bearer error (RFC 6750 §3)."""
    if err is None:
        return {"WWW-Authenticate": REALM}
    description = err.description.replace('"', "'")
    return {"WWW-Authenticate": f'{REALM}, error="{err.error}", error_description="{description}"'}


def bearer_token(authorization: str | None, form_token: str | None) -> str:
    """Return the access token from the Authorization header or the form body (RFC 6750 §2.1-2.2)."""
    scheme, token = presented_token(authorization, form_token)
    if scheme != "bearer":
        # RFC 6750 §3.1: an unsupported method is answered like no authentication, a bare challenge
        raise InvalidToken("the Authorization header is not a Bearer token", headers=bearer_challenge())
    return token


def presented_token(authorization: str | None, form_token: str | None) -> tuple[str, str]:
    """Return (scheme, token): ``bearer`` or ``dpop`` (RFC 6750 §2, RFC 9449 §7.1); raise InvalidToken.

    An unsupported scheme is answered 401 with a bare challenge (RFC 6750
    §3.1: no error code for a request the server cannot read as an attempt),
    never 400: relying-party libraries read a 400 as a failed call.
    """
    scheme, header_token = "bearer", None
    if authorization:
        name, _, value = authorization.strip().partition(" ")
        scheme = name.lower()
        if scheme not in ("bearer", "dpop") or not value.strip():
            raise InvalidToken("the Authorization header is not a Bearer or DPoP token",
                               headers=bearer_challenge())
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
    return scheme, token


def dpop_challenge(err: OAuthError, algorithms: tuple[str, ...]) -> dict[str, str]:
    """Return the WWW-Authenticate header of a DPoP error at a resource (RFC 9449 §7.1)."""
    description = err.description.replace('"', "'")
    return {"WWW-Authenticate": f'DPoP algs="{" ".join(algorithms)}", error="{err.error}", '
                                f'error_description="{description}"'}


def resource_token(p: Provider, *, authorization: str | None, form_token: str | None,
                   proof: str | None, method: str, url: str, now: int) -> dict[str, Any]:
    """Return the claims of the access token a resource request presents, its DPoP binding checked.

    A ``DPoP`` presentation needs a proof of the request with ``ath`` (RFC
    9449 §7.1) by the key the token is bound to; a ``Bearer`` presentation
    of a bound token is refused (§7.2). DPoP errors are 401 with a ``DPoP``
    challenge listing the accepted algorithms, ``use_dpop_nonce`` with a
    ``DPoP-Nonce`` header (§9).
    """
    scheme, token = presented_token(authorization, form_token)
    settings = p.tenant.settings.dpop
    try:
        claims = verify_bearer(p, token, now)
    except OAuthError as err:
        if scheme == "dpop":  # RFC 9449 §7.1: the challenge names the scheme the client used
            err.headers = dpop_challenge(err, settings.algorithms)
        raise
    verified = None
    try:
        if scheme == "dpop":
            verified = dpop.verify_proof(
                proof, method=method, url=url, now=now, settings=settings, access_token=token,
                use_jti=lambda key, expires: p.store.use_jti(dpop.USED_PROOFS, key, expires, now),
                nonce_mac=lambda text: p.codes.issued(text)[0], intact_since=p.store.intact_since)
        dpop.check_binding(claims, verified)
    except OAuthError as err:
        err.status = 401  # RFC 9449 §7.1: a resource answers proof and binding errors with 401
        err.headers = {**err.headers, **dpop_challenge(err, settings.algorithms)}
        raise
    return claims


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
    out = user_claims(user, scopes)
    names = claims.get("userinfo_claims")
    if isinstance(names, list):  # OIDC Core §5.5: the claims parameter's userinfo member
        out.update(requested_claims(user, (n for n in names if isinstance(n, str))))
    return out
