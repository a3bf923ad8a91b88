"""GET/POST /userinfo (OIDC Core §5.3): claims for the access token's subject, Bearer or DPoP."""

from __future__ import annotations

from typing import Any

import falcon

from policy_sso.oidc.provider import Provider
from policy_sso.oidc.userinfo import resource_token, userinfo
from server.hooks import protocol_form_body

PATH = "/userinfo"


def optional_form_body(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Parse a form body when there is one: a POST with an empty body and no Content-Type has none.

    OIDC Core §5.3.1 allows POST, and RFC 6750 §2.1 (the header) does not
    depend on the body: the conformance suite's POST carries the token in the
    header and nothing else.
    """
    if not req.content_type and not req.content_length:
        req.context.form = {}
        return
    protocol_form_body(req, resp, resource, params)


class UserInfo:
    """The UserInfo endpoint; RFC 6750 and RFC 9449 errors carry WWW-Authenticate."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the claims (token in the Authorization header)."""
        resp.media = self._claims(req, None)

    @falcon.before(optional_form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the claims (token in the header or the form body, RFC 6750 §2.2)."""
        resp.media = self._claims(req, req.context.form.get("access_token"))

    def _claims(self, req: falcon.Request, form_token: str | None) -> dict[str, Any]:
        p = self.provider
        token = resource_token(p, authorization=req.get_header("Authorization"), form_token=form_token,
                               proof=req.get_header("DPoP"), method=req.method, url=p.issuer + PATH,
                               now=req.context.now)
        return userinfo(p, token)
