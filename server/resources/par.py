"""POST /par (RFC 9126): pushed authorization requests from authenticated clients."""

from __future__ import annotations

import falcon

from policy_sso.oidc import par, token_endpoint
from policy_sso.oidc.provider import Provider
from server.hooks import authenticate_client, protocol_form_body


class PushedAuthorizationRequest:
    """The pushed authorization request endpoint (RFC 9126 §2); responses are never cached (§2.2)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @falcon.before(protocol_form_body)
    @falcon.before(authenticate_client)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Validate and seal the request; 201 with its request_uri and expires_in."""
        proof = req.get_header("DPoP")
        jkt = None
        if proof is not None:  # RFC 9449 §10.1: a proof with the push binds the code to its key
            jkt = token_endpoint.dpop_proof_of(self.provider, proof, "/par", req.context.now).jkt
        resp.media = par.push(self.provider, req.context.client, req.context.form, req.context.now, jkt)
        resp.status = falcon.HTTP_201
        resp.set_header("Pragma", "no-cache")
