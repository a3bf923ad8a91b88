"""Discovery metadata and the JWKS (OIDC Discovery 1.0 §4, RFC 7517 §5)."""

from __future__ import annotations

import json

import falcon

from policy_sso.oidc.discovery import discovery_document
from policy_sso.oidc.keys import JWKS_MAX_AGE
from policy_sso.oidc.provider import Provider


class Discovery:
    """GET /.well-known/openid-configuration: built once per tenant (again after a reload)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._cached: tuple[object, str] | None = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the metadata document."""
        del req
        tenant = self.provider.tenant
        cached = self._cached
        if cached is None or cached[0] is not tenant:
            cached = self._cached = (tenant, json.dumps(discovery_document(tenant), indent=2))
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["public", "max-age=300"]
        resp.text = cached[1]


class Jwks:
    """GET /jwks: the public signing keys, old ones included after a rotation."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the key set as of the request's clock; relying parties may keep it JWKS_MAX_AGE seconds."""
        resp.content_type = "application/jwk-set+json"
        # keys.py publishes a key this long (and more) before it signs: keep the two in step
        resp.cache_control = ["public", f"max-age={JWKS_MAX_AGE}"]
        resp.text = json.dumps(self.provider.keyring.jwks(req.context.now))
