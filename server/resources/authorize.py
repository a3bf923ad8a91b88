"""GET/POST /authorize (OIDC Core §3.1.2): the decision, then the answer or the hosted pages."""

from __future__ import annotations

import urllib.parse

import falcon

from policy_sso.errors import StoreUnavailable
from policy_sso.oidc import authorization_flow
from policy_sso.oidc.authorize import single_valued_authorization, without_blanks
from policy_sso.oidc.provider import Provider
from server.browser import Browser
from server.client_address import client_address, client_device, policy_client_ip
from server.hooks import form_text


class Authorize:
    """The authorization endpoint; errors before the redirect_uri is verified are shown as pages."""

    html_errors = True

    def __init__(self, provider: Provider, browser: Browser) -> None:
        self.provider = provider
        self.browser = browser

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Handle a request sent as query parameters (a repeated one goes back to a verified client)."""
        self._authorize(req, resp, self._parameters(req.query_string))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Handle a request sent as a form body (OIDC Core §3.1.2.1), as a query would be."""
        self._authorize(req, resp, self._parameters(form_text(req)))

    def _parameters(self, text: str) -> dict[str, str]:
        raw = falcon.uri.parse_query_string(text, keep_blank=True, csv=False)
        return without_blanks(single_valued_authorization(raw, self.provider.tenant.clients,
                                                          self.provider.issuer))

    def _authorize(self, req: falcon.Request, resp: falcon.Response, params: dict[str, str]) -> None:
        try:
            tenant = self.provider.tenant
            proxies = tenant.settings.trusted_proxies
            result = authorization_flow.authorize(
                self.provider, params, self.browser.session_id(req), req.context.now,
                address=client_address(req, proxies),
                # parsed only where some policy tests the network: the silent path pays nothing otherwise
                client_ip=policy_client_ip(req, proxies) if tenant.tests_networks else None,
                device=lambda: client_device(req, proxies))
        except StoreUnavailable as fault:  # SPEC §7: the verified redirect_uri hears of it
            raise authorization_flow.store_fault(self.provider, params, fault, req.context.now) from None
        if result.session_id is not None:  # a login_hint_token signed a user in
            self.browser.set_session(resp, result.session_id)
        if isinstance(result, authorization_flow.Answer):
            self.browser.deliver(resp, result.response)
            return
        self.browser.set_interaction(req, resp, self.provider.codec, result.interaction, req.context.now)
        query = urllib.parse.urlencode({"interaction": result.interaction.id})
        self.browser.redirect(resp, f"/{result.page}?{query}", after_post=req.method == "POST")
