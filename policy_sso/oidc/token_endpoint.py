"""The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6; OIDC Core §3.1.3, §12).

- authorization_code: single use; a second redemption fails and revokes what
  the first issued (RFC 6749 §4.1.2, RFC 9700 §4.5.3); redirect_uri must equal
  the authorization request's; PKCE S256 verified (RFC 7636 §4.6), and a
  verifier without a challenge is refused (RFC 9700 §2.1.1, PKCE downgrade).
- refresh tokens are issued when ``offline_access`` was granted (OIDC Core §11)
  and the client may use the refresh_token grant.
- refresh_token: rotated on every use; presenting a spent token revokes the
  whole family (RFC 9700 §4.14.2), with every access token issued from it: the
  store records each access token's ``jti`` with its family as it is issued
  (in the call that stores the refresh token, no call of its own). A request
  the right client can correct (a wider ``scope``) is refused before the token
  is spent, so its retry is not taken for reuse.
- client_credentials: confidential clients only, an access token for the client.
- DPoP (RFC 9449 §5): with a proof, the authorization_code and refresh_token
  grants issue access tokens bound to its key (``cnf.jkt``, token_type
  ``DPoP``), and a public client's refresh tokens too (§5.8); a bound refresh
  token presented with another key, or none, is treated as stolen.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from policy_sso.config import Client
from policy_sso.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from policy_sso.oidc import dpop, pkce
from policy_sso.oidc.authorization_flow import mint_access_token, mint_id_token
from policy_sso.oidc.codes import USED_CODES
from policy_sso.oidc.credential_change import (
    family_revoked,
    grant_revoked,
    issued_before_store_loss,
)
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.store import REVOKED_ACCESS_TOKENS, token_key


def token_request(p: Provider, client: Client, form: Mapping[str, str], now: int, *,
                  dpop_proof: str | None = None) -> dict[str, Any]:
    """Return the token response for an authenticated client's request (RFC 6749 §5.1).

    ``dpop_proof`` is the request's DPoP header (RFC 9449 §5).
    """
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is missing")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
    if grant_type not in client.grant_types:
        raise UnauthorizedClient(f"the client may not use grant_type {grant_type!r}")
    proof = None
    # RFC 9449 §5: a proof in any token request is checked, and binds what is issued to its key
    # (the backend API takes client_credentials tokens by DPoP too)
    if dpop_proof is not None or client.dpop_bound_access_tokens:
        # a code's redemption spends the proof with the code, in one store write (_authorization_code)
        proof = dpop_proof_of(p, dpop_proof, "/token", now, spend=grant_type != "authorization_code")
    return handler(p, client, form, now, proof)


def dpop_proof_of(p: Provider, proof: str | None, path: str, now: int, *, spend: bool = True) -> dpop.Proof:
    """Return the verified DPoP proof of a POST to the provider's ``path`` (RFC 9449 §4.3).

    ``spend`` False: the caller records the proof's ``replay_record`` itself, and refuses a
    proof issued before the store last lost its records.
    """
    def use_jti(key: str, expires_at: int) -> bool:
        return p.store.use_jti(dpop.USED_PROOFS, key, expires_at, now)

    return dpop.verify_proof(proof, method="POST", url=p.issuer + path, now=now,
                             settings=p.tenant.settings.dpop, use_jti=use_jti if spend else None,
                             nonce_mac=lambda text: p.codes.issued(text)[0],
                             intact_since=p.store.intact_since)


def _authorization_code(p: Provider, client: Client, form: Mapping[str, str], now: int,
                        proof: dpop.Proof | None) -> dict[str, Any]:
    jkt = proof.jkt if proof is not None else None
    code = form.get("code")
    if not code:
        raise InvalidRequest("code is missing")
    sealed = p.codes.open(code, now)
    if sealed is None:
        raise InvalidGrant("the authorization code is invalid or expired")
    # every check before the code is spent: a client that cannot redeem it must not use it up either
    if sealed.grant.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client")
    if form.get("redirect_uri") != sealed.redirect_uri:
        raise InvalidGrant("redirect_uri does not match the authorization request")
    verifier = form.get("code_verifier")
    challenge = sealed.code_challenge
    if challenge:
        if not verifier:
            raise InvalidGrant("code_verifier is required (PKCE)")
        if not pkce.verify_s256(verifier, challenge):
            raise InvalidGrant("code_verifier does not match the code_challenge")
    elif verifier:
        raise InvalidGrant("code_verifier sent but the authorization request had no code_challenge")
    if sealed.dpop_jkt is not None and sealed.dpop_jkt != jkt:
        # RFC 9449 §10: a code bound with dpop_jkt is redeemed with a proof by that key only
        raise InvalidGrant("the authorization code is bound to another DPoP key (dpop_jkt)")
    jti, family = p.codes.issued(code)
    # the code and the proof are spent together; a replayed proof spends the code too (fail closed)
    spent = (USED_CODES, p.codes.used_key(code, sealed), sealed.expires_at)
    fresh = p.store.use_jtis((spent, proof.replay_record()) if proof is not None else (spent,), now)
    if not all(fresh[1:]):
        # a replayed proof first: a captured request sent again is refused as the replay it is, and
        # does not revoke what its code issued (only a fresh proof, by a key, can reuse a code)
        raise dpop.InvalidDpopProof(dpop.REPLAYED)
    if proof is not None and issued_before_store_loss(p, proof.iat):
        raise dpop.InvalidDpopProof(dpop.STALE)
    if issued_before_store_loss(p, sealed.expires_at - p.tenant.settings.tokens.code_lifetime):
        raise InvalidGrant("the authorization code is invalid or expired")  # its redemption may be lost
    if not fresh[0]:
        # the first redemption happened before the code expired, so its access token ends by then
        revoke_issued(p, family, jti, sealed.expires_at + p.tenant.settings.tokens.access_token_lifetime,
                      now)
        raise InvalidGrant("the authorization code was already used; tokens issued for it are revoked")
    # after the spending, not before: a code whose grant a password change revoked can never be
    # redeemed (cut-offs only move forward), so spending it takes nothing from anyone
    if grant_revoked(p, sealed.grant.subject, sealed.grant.auth_time, now):
        raise InvalidGrant("the authorization code is invalid or expired")
    return _tokens(p, client, sealed.grant, now, jti=jti, family=family, id_token=True, jkt=jkt)


def _refresh_token(p: Provider, client: Client, form: Mapping[str, str], now: int,
                   proof: dpop.Proof | None) -> dict[str, Any]:
    jkt = proof.jkt if proof is not None else None
    old = form.get("refresh_token")
    if not old:
        raise InvalidRequest("refresh_token is missing")
    asked = form.get("scope", "").split()
    if asked:
        # checked before the token is spent (as a code's are): the client's corrected retry must
        # not find it spent and revoke the grant. Only a request that names a scope pays this read;
        # a token another client or DPoP key presents goes on to be revoked below, as stolen.
        found = p.store.get_refresh(token_key(old), now)
        if (found is not None and found[1].get("client_id") == client.client_id
                and found[1].get("jkt") in (None, jkt)):
            _narrowed(Grant.from_json(found[1]), asked)
    settings = p.tenant.settings.tokens
    new, jti = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    # the access token this rotation issues is recorded with the family, so revoking it revokes that too
    rotation = p.store.rotate_refresh(token_key(old), token_key(new), now,
                                      now + settings.refresh_token_lifetime,
                                      access=(jti, now + settings.access_token_lifetime))
    if rotation.status == "reused":
        p.audit.record("token.refresh_reuse", now, outcome="family_revoked", client=client.client_id,
                       subject=(rotation.data or {}).get("sub"))
        raise InvalidGrant("the refresh token was already used; its token family is revoked")
    if rotation.status != "ok" or rotation.data is None or rotation.family_id is None:
        raise InvalidGrant("the refresh token is invalid, expired or revoked")
    if rotation.data.get("client_id") != client.client_id:
        p.store.revoke_family(rotation.family_id, now)
        raise InvalidGrant("the refresh token was issued to another client")
    bound = rotation.data.get("jkt")
    if bound is not None and bound != jkt:
        # RFC 9449 §5.8: a bound refresh token works only with its key's proof; without it, it is stolen
        p.store.revoke_family(rotation.family_id, now)
        raise InvalidGrant("the refresh token is bound to another DPoP key; its token family is revoked")
    if family_revoked(p, rotation.data, now):
        # the password changed, or consent was withdrawn, since
        p.store.revoke_family(rotation.family_id, now)
        raise InvalidGrant("the refresh token is invalid, expired or revoked")
    grant = Grant.from_json(rotation.data)
    # a family's data never changes, so this holds whenever the check before the rotation did
    grant = _narrowed(grant, asked) if asked else grant.with_scope(grant.scope)
    response = _tokens(p, client, grant, now, jti=jti, family=None,
                       id_token="openid" in grant.scope.split(), jkt=jkt)
    response["refresh_token"] = new
    return response


def _narrowed(grant: Grant, asked: list[str]) -> Grant:
    """Return ``grant`` narrowed to the ``asked`` scope; raise InvalidScope for a wider one (RFC 6749 §6)."""
    if not set(asked) <= set(grant.scope.split()):
        raise InvalidScope("scope exceeds what the refresh token was granted")
    return grant.with_scope(" ".join(asked))


def _client_credentials(p: Provider, client: Client, form: Mapping[str, str], now: int,
                        proof: dpop.Proof | None) -> dict[str, Any]:
    if client.is_public:
        raise UnauthorizedClient("public clients cannot use client_credentials")
    asked = form.get("scope", "").split()
    usable = [s for s in client.scopes if s not in ("openid", "offline_access")]
    if asked and not set(asked) <= set(usable):
        raise InvalidScope("scope is not allowed for this client")
    grant = Grant(client.client_id, client.client_id, " ".join(asked or usable))
    return _tokens(p, client, grant, now, jti=secrets.token_urlsafe(16), family=None, id_token=False,
                   jkt=proof.jkt if proof is not None else None)


GRANTS = {
    "authorization_code": _authorization_code,
    "refresh_token": _refresh_token,
    "client_credentials": _client_credentials,
}


def _tokens(p: Provider, client: Client, grant: Grant, now: int, *, jti: str, family: str | None,
            id_token: bool, jkt: str | None = None) -> dict[str, Any]:
    settings = p.tenant.settings.tokens
    access_token = mint_access_token(p, grant, now, jti, jkt)
    # RFC 9449 §5.1: a bound token's type is DPoP
    out: dict[str, Any] = {"access_token": access_token, "token_type": "DPoP" if jkt else "Bearer",
                           "expires_in": settings.access_token_lifetime, "scope": grant.scope}
    if id_token:
        out["id_token"] = mint_id_token(p, grant, now, access_token=access_token)
    # OIDC Core §11: a refresh token when the client may use them and offline_access was granted
    # (node-oidc-provider's default too); it then outlives the browser session
    if (family is not None and "refresh_token" in client.grant_types
            and "offline_access" in grant.scope.split()):
        refresh = secrets.token_urlsafe(32)
        data = {**grant.to_json(), "granted_at": now}  # what a consent withdrawal is compared with
        if jkt is not None and client.is_public:
            data["jkt"] = jkt  # RFC 9449 §5.8: a public client's refresh tokens are bound to its key
        # the access token is recorded with its family: revoking the family revokes it too
        p.store.put_refresh(token_key(refresh), family, data, now + settings.refresh_token_lifetime, now=now,
                            access=(jti, now + settings.access_token_lifetime))
        if p.store.is_jti_used(REVOKED_ACCESS_TOKENS, jti, now):
            # the code was redeemed again while this redemption ran, and that one revoked the
            # family before this refresh token was in it (revoke_issued): revoke it now
            p.store.revoke_family(family, now)
            raise InvalidGrant("the authorization code was already used; tokens issued for it are revoked")
        out["refresh_token"] = refresh
    # only the authorization_code grant passes a family; client_credentials names the client as subject
    p.audit.record("token.issued" if family is not None or grant.subject == client.client_id
                   else "token.refreshed", now, outcome="success", client=client.client_id,
                   subject=grant.subject, scope=grant.scope,
                   issued=sorted(k for k in out if k.endswith("_token")))
    return out


def revoke_issued(p: Provider, family: str, jti: str, expires_by: int, now: int) -> None:
    """Revoke what a code's first redemption issued: its refresh family and its access token.

    The family's revocation takes every access token issued from it; the first one is revoked by
    its ``jti`` as well, as a code redeemed without ``offline_access`` started no family. The
    ``jti`` goes first: a first redemption still running stores its refresh token after this
    revocation found no family, then sees the ``jti`` revoked and revokes the family itself
    (:func:`_tokens`), so no refresh token of a reused code outlives the reuse.
    """
    p.store.use_jti(REVOKED_ACCESS_TOKENS, jti, max(expires_by, now + 1), now=now)
    p.store.revoke_family(family, now)
