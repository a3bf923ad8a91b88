"""The backend session API (SPEC §4): JSON in, JSON out, each call with a client access token."""

from __future__ import annotations

import falcon

from policy_sso.networks import IPAddress
from policy_sso.oidc import backend
from policy_sso.oidc.provider import Provider
from server.browser import Browser
from server.client_address import client_address, is_trusted_proxy, policy_client_ip
from server.hooks import client_token, json_body


class _BackendEndpoint:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def _address(self, req: falcon.Request) -> str:
        # a backend calling for its users is one address unless it is a trusted proxy that forwards theirs
        return client_address(req, self.provider.tenant.settings.trusted_proxies)

    def _client_ip(self, req: falcon.Request) -> IPAddress | None:
        """Return the user's address for ``when network in``, or None (unknown: every network block applies).

        The peer here is the app's server, not the user's browser: its own
        address says nothing about where the user is. Only an app that is a
        trusted proxy and forwards its user's address (X-Forwarded-For) gives
        one; otherwise the address is unknown, which fails closed.
        """
        tenant = self.provider.tenant
        trusted = tenant.settings.trusted_proxies
        if not tenant.tests_networks or not is_trusted_proxy(req, trusted):
            return None
        return policy_client_ip(req, trusted)


class Password(_BackendEndpoint):
    """POST /v1/auth/password: username + password -> session_id, and tokens when the policy allows."""

    @falcon.before(json_body)
    @falcon.before(client_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Sign a user in with a password for the calling client."""
        resp.media = backend.password(self.provider, req.context.client, req.context.json, req.context.now,
                                      address=self._address(req), client_ip=self._client_ip(req))


class Otp(_BackendEndpoint):
    """POST /v1/auth/otp: add a TOTP second factor to a session."""

    @falcon.before(json_body)
    @falcon.before(client_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Verify the code; the session moves to a new id."""
        resp.media = backend.otp(self.provider, req.context.client, req.context.json, req.context.now,
                                 address=self._address(req))


class SessionAuthenticate(_BackendEndpoint):
    """POST /v1/auth/session/authenticate: silent authentication by session id."""

    @falcon.before(json_body)
    @falcon.before(client_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Tokens when the client's policy allows the session; otherwise 400 with the decision."""
        resp.media = backend.authenticate(self.provider, req.context.client, req.context.json,
                                          req.context.now, client_ip=self._client_ip(req))


class SessionLogout(_BackendEndpoint):
    """POST /v1/auth/session/logout: end a session by id."""

    @falcon.before(json_body)
    @falcon.before(client_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the session; 204 whether or not it was still alive."""
        backend.session_logout(self.provider, req.context.json, req.context.now, req.context.client)
        resp.status = falcon.HTTP_204


class UserLogout(_BackendEndpoint):
    """POST /v1/auth/logout: end the session of the user's own access token."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the session and revoke the token (Bearer, or DPoP with a proof of this call); 204."""
        backend.user_logout(self.provider, req.get_header("Authorization"), req.get_header("DPoP"),
                            req.context.now)
        resp.status = falcon.HTTP_204


class SessionStatus(_BackendEndpoint):
    """GET /v1/auth/session/status: is the browser's IdP session alive (polled by apps)."""

    def __init__(self, provider: Provider, browser: Browser) -> None:
        super().__init__(provider)
        self.browser = browser

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer ``{"active": …}`` for the session cookie; rate-limited per session and client."""
        client_id = req.get_param("client_id") or "-"
        resp.media = backend.session_status(self.provider, self.browser.session_id(req), client_id,
                                            req.context.now, address=self._address(req))
        resp.set_header("Cache-Control", "no-store")
