"""Token revocation (RFC 7009) and introspection (RFC 7662) for authenticated clients.

Who may touch which token (RFC 7662 §2.1 and §4, RFC 7009 §2.1): every caller
is an authenticated client (a confidential client by its secret; a public
client only names itself). A refresh token is described and revoked only for
the client it was issued to; an access token is revoked only by its client,
and described to its own client or to a confidential client acting as a
resource server. Any other token is ``{"active": false}`` at introspection and
a no-op 200 at revocation, so a caller learns nothing about tokens it does
not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sso.config import Client
from policy_sso.errors import InvalidRequest, InvalidToken
from policy_sso.oidc.credential_change import family_revoked
from policy_sso.oidc.provider import Provider
from policy_sso.oidc.userinfo import verify_bearer
from policy_sso.sessions.store import REVOKED_ACCESS_TOKENS, token_key


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def revoke(p: Provider, client: Client, form: Mapping[str, str], now: int) -> None:
    """Revoke an access or refresh token the client holds (RFC 7009 §2.1).

    Unknown, invalid and other clients' tokens are ignored: the response is
    200 either way (§2.2), so a caller learns nothing about tokens.
    """
    token = form.get("token")
    if not token:
        raise InvalidRequest("token is missing")
    if _looks_like_jwt(token):
        try:
            claims = verify_bearer(p, token, now)
        except InvalidToken:
            return
        if claims.get("client_id") == client.client_id:
            p.store.use_jti(REVOKED_ACCESS_TOKENS, str(claims["jti"]),
                            max(int(claims.get("exp", now)), now + 1), now=now)
            p.audit.record("token.revoked", now, outcome="revoked", client=client.client_id,
                           subject=str(claims.get("sub")), kind="access_token")
        return
    found = p.store.get_refresh(token_key(token), now)
    if found is not None and found[1].get("client_id") == client.client_id:
        # RFC 7009 §2.1: revoking a refresh token revokes the whole grant, the access tokens issued
        # from it included (this server revokes access tokens, so it SHOULD)
        p.store.revoke_family(found[0], now)
        p.audit.record("token.revoked", now, outcome="revoked", client=client.client_id,
                       subject=found[1].get("sub"), kind="refresh_token")


def introspect(p: Provider, client: Client, form: Mapping[str, str], now: int) -> dict[str, Any]:
    """Return the introspection response for a token (RFC 7662 §2.2); inactive as ``{"active": false}``.

    A public client cannot be a resource server (it holds no credentials to
    prove it is one, RFC 7662 §4), so it sees only its own tokens.
    """
    token = form.get("token")
    if not token:
        raise InvalidRequest("token is missing")
    if _looks_like_jwt(token):
        try:
            claims = verify_bearer(p, token, now)
        except InvalidToken:
            return {"active": False}
        if client.is_public and claims.get("client_id") != client.client_id:
            return {"active": False}
        keep = ("scope", "client_id", "sub", "exp", "iat", "nbf", "aud", "iss", "jti",
                "auth_time", "acr", "amr", "sid", "cnf")
        # RFC 9449 §6.2: a bound token introspects with its cnf and the DPoP type
        return {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer",
                **{k: claims[k] for k in keep if k in claims}}
    found = p.store.get_refresh(token_key(token), now)
    if found is None or found[1].get("client_id") != client.client_id:
        # a refresh token is a credential of its client alone; no resource server ever receives one
        return {"active": False}
    data = found[1]
    if family_revoked(p, data, now):  # a password change, or a consent withdrawal, since
        return {"active": False}
    # no token_type: RFC 7662 §2.2 means an access token's type (RFC 6749 §7.1), and a refresh
    # token has none (node-oidc-provider leaves it out too)
    return {"active": True, "client_id": data.get("client_id"), "sub": data.get("sub"),
            "scope": data.get("scope"), "iss": p.issuer}
