"""POST /v1/auth/api-decision: a resource server asks whether a token may perform an operation (RFC 9470)."""

from __future__ import annotations

from typing import Any

import falcon

from policy_sso.oidc import step_up
from policy_sso.oidc.provider import Provider
from server.hooks import json_body


def authenticate_resource_server(req: falcon.Request, resp: falcon.Response, resource: Any,
                                 params: dict) -> None:
    """Authenticate the calling client by HTTP Basic or ``client_id``/``client_secret`` body members.

    The same client authentication as /introspect (RFC 6749 §2.3.1), read from
    the JSON body instead of a form.
    """
    del resp, params
    body = req.context.json
    credentials = {k: v for k in ("client_id", "client_secret") if isinstance(v := body.get(k), str)}
    req.context.client = resource.provider.clients.authenticate(req.get_header("Authorization"), credentials)


class ApiDecision:
    """The step-up decision for resource servers (docs/api-step-up.md)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @falcon.before(json_body)
    @falcon.before(authenticate_resource_server)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer ``{"allow": true}`` or the refusal with its challenge, reasons and remedy."""
        resp.media = step_up.resource_server_question(self.provider, req.context.client, req.context.json,
                                                      req.context.now)
        resp.set_header("Cache-Control", "no-store")
