"""GET/POST /userinfo (OIDC Core §5.3): claims for the bearer access token's subject."""

from __future__ import annotations

import falcon

from policy_sso.oidc.provider import Provider
from policy_sso.oidc.userinfo import userinfo
from server.hooks import bearer, form_body


class UserInfo:
    """The UserInfo endpoint; RFC 6750 errors carry WWW-Authenticate."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @falcon.before(bearer)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the claims (token in the Authorization header)."""
        resp.media = userinfo(self.provider, req.context.token)

    @falcon.before(form_body)
    @falcon.before(bearer)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the claims (token in the header or the form body, RFC 6750 §2.2)."""
        resp.media = userinfo(self.provider, req.context.token)
