"""POST /token, /revoke and /introspect: client-authenticated form endpoints."""

from __future__ import annotations

import falcon

from policy_sso.oidc import revocation, token_endpoint
from policy_sso.oidc.provider import Provider
from server.hooks import authenticate_client, protocol_form_body


class _ClientEndpoint:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider


class Token(_ClientEndpoint):
    """The token endpoint (RFC 6749 §3.2); responses are never cached (§5.1)."""

    @falcon.before(protocol_form_body)
    @falcon.before(authenticate_client)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Exchange a grant for tokens."""
        resp.media = token_endpoint.token_request(self.provider, req.context.client,
                                                  req.context.form, req.context.now,
                                                  dpop_proof=req.get_header("DPoP"))
        resp.set_header("Pragma", "no-cache")


class Revoke(_ClientEndpoint):
    """The revocation endpoint (RFC 7009 §2)."""

    @falcon.before(protocol_form_body)
    @falcon.before(authenticate_client)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Revoke the token; 200 with an empty body whatever the token was (§2.2)."""
        revocation.revoke(self.provider, req.context.client, req.context.form, req.context.now)
        resp.status = falcon.HTTP_200
        resp.content_type = falcon.MEDIA_JSON
        resp.text = "{}"


class Introspect(_ClientEndpoint):
    """The introspection endpoint (RFC 7662 §2)."""

    @falcon.before(protocol_form_body)
    @falcon.before(authenticate_client)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Describe the token."""
        resp.media = revocation.introspect(self.provider, req.context.client, req.context.form,
                                           req.context.now)
