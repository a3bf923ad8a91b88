"""Pushed authorization requests (RFC 9126).

``POST /par`` takes an authenticated client's authorization request,
validates it exactly as ``/authorize`` does (RFC 9126 §2.1: "the AS MUST
validate the pushed request as it would an authorization request"), and
answers a ``request_uri`` (§2.2). The request is sealed into the URI
(AES-256-GCM-SIV under a key derived from the state directory's secret, as
authorization codes are, :mod:`policy_sso.oidc.codes`): pushing writes
nothing, and any instance sharing the key opens it. ``/authorize`` with
``client_id`` and ``request_uri`` opens it, checks it was pushed by that
client and has not expired, and records it as used in the store
(``Store.use_jti``), so it works once (§4, §7.3). Only the pushed parameters
count (§4): the decision is the policy's, exactly as for any other request.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from policy_sso import b64url
from policy_sso.config import Client
from policy_sso.errors import InvalidRequest
from policy_sso.oidc.authorize import (
    AuthorizationError,
    ResponseTarget,
    canonical_response_type,
    resolve_client,
    response_mode_for,
)
from policy_sso.oidc.codes import CodeSealer
from policy_sso.oidc.credential_change import issued_before_store_loss
from policy_sso.sessions.store import token_key

if TYPE_CHECKING:
    from policy_sso.oidc.provider import Provider

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"  # RFC 9126 §2.2
USED_REQUEST_URIS = "par"  # the use_jti namespace of spent request_uri values
_AAD = b"policy-sso pushed authorization request v1"
_NONCE = 12
# client authentication is not part of the authorization request (RFC 9126 §2.1)
CLIENT_AUTH_PARAMS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})
MAX_REQUEST_URI_CHARS = 16 * 1024


class RequestSealer:
    """Seals pushed requests into request_uri values and opens them."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCMSIV(key)

    def seal(self, client_id: str, params: Mapping[str, str], expires_at: int) -> str:
        """Return the request_uri carrying ``params`` of ``client_id`` until ``expires_at``."""
        plain = zlib.compress(json.dumps([client_id, expires_at, dict(params)],
                                         separators=(",", ":")).encode())
        nonce = os.urandom(_NONCE)
        raw = nonce + self._aead.encrypt(nonce, plain, _AAD)
        return REQUEST_URI_PREFIX + b64url.encode(raw)

    def open(self, request_uri: str) -> tuple[str, int, dict[str, str]] | None:
        """Return (client_id, expires_at, params) of a request_uri this provider sealed, else None."""
        if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > MAX_REQUEST_URI_CHARS:
            return None
        raw = b64url.canonical_decode(request_uri[len(REQUEST_URI_PREFIX):])  # single use: one spelling
        if raw is None:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        except (ValueError, InvalidTag):
            return None
        client_id, expires_at, params = json.loads(zlib.decompress(plain))  # authenticated: ours
        return client_id, expires_at, params


@functools.lru_cache(maxsize=4)
def sealer_for(codes: CodeSealer) -> RequestSealer:
    """Return the request sealer keyed like ``codes`` (one per provider key)."""
    return RequestSealer(codes.derive_key(b"pushed authorization requests v1"))


def push(p: Provider, client: Client, form: Mapping[str, str], now: int,
         dpop_jkt: str | None = None) -> dict[str, Any]:
    """Return the pushed authorization response (RFC 9126 §2.2): ``request_uri`` and ``expires_in``.

    Errors are the authorization endpoint's, as JSON (§2.3): a request
    ``/authorize`` would refuse is refused here. ``dpop_jkt`` is the key of
    a DPoP proof sent with the push: the code is bound to it (RFC 9449 §10.1).
    """
    from policy_sso.oidc.authorization_flow import parse_request  # the flow imports this module

    if "request_uri" in form:
        # RFC 9126 §2.1: a pushed request cannot itself refer to another
        raise InvalidRequest("request_uri is not allowed in a pushed authorization request")
    if form.get("client_id", client.client_id) != client.client_id:
        raise InvalidRequest("client_id does not match the authenticated client")
    params = {k: v for k, v in form.items() if k not in CLIENT_AUTH_PARAMS}
    params["client_id"] = client.client_id
    if dpop_jkt is not None and params.setdefault("dpop_jkt", dpop_jkt) != dpop_jkt:
        # RFC 9449 §10.1: both given, they must name the same key
        raise InvalidRequest("dpop_jkt does not match the DPoP proof's key", error="invalid_dpop_proof")
    try:
        parse_request(p, params, now)
    except AuthorizationError as err:
        raise err.error from None
    lifetime = p.tenant.settings.par.request_uri_lifetime
    return {"request_uri": sealer_for(p.codes).seal(client.client_id, params, now + lifetime),
            "expires_in": lifetime}


def pushed_params(p: Provider, params: Mapping[str, str], now: int, *, spend: bool = True) -> dict[str, str]:
    """Return the pushed parameters a request's ``request_uri`` names; spend it unless ``spend`` is False.

    RFC 9126 §4: ``client_id`` must be the pushing client's; the request_uri
    works once and until it expires. An unusable one is ``invalid_request_uri``,
    shown by the server itself (the redirect_uri is inside it) unless the
    query names a registered redirect_uri of its own.
    """
    request_uri = params.get("request_uri", "")
    opened = sealer_for(p.codes).open(request_uri)
    if opened is None or now >= opened[1]:
        raise _refused(p, params, "request_uri is invalid or expired")
    client_id, expires_at, pushed = opened
    if params.get("client_id") != client_id:
        raise _refused(p, params, "request_uri was pushed by another client (client_id must be the pusher's)")
    if spend and not p.store.use_jti(USED_REQUEST_URIS, token_key(request_uri), expires_at, now):
        raise _refused(p, params, "request_uri was already used")
    if spend and issued_before_store_loss(p, expires_at - p.tenant.settings.par.request_uri_lifetime):
        raise _refused(p, params, "request_uri is invalid or expired")  # its use may have been lost
    return pushed


def _refused(p: Provider, params: Mapping[str, str], description: str) -> Exception:
    """Return the invalid_request_uri error: redirected when the query itself names a verified redirect_uri.

    The pushed redirect_uri cannot be trusted from a request_uri that does not
    open; one the query carries can, once it is the client's registered one
    (RFC 9700 §4.1.1), and then the client hears of the error as of any other.
    """
    err = InvalidRequest(description, error="invalid_request_uri")
    if not params.get("redirect_uri"):
        return err
    try:
        _, redirect_uri = resolve_client(params, p.tenant.clients)
    except InvalidRequest:
        return err
    mode, _ = response_mode_for(params, canonical_response_type(params.get("response_type", "")))
    return AuthorizationError(err, ResponseTarget(redirect_uri, mode, params.get("state"), p.issuer))


def par_required(p: Provider, client: Client) -> bool:
    """Return whether the client must push its authorization requests (RFC 9126 §5, §6)."""
    return client.require_pushed_authorization_requests or p.tenant.settings.par.required
