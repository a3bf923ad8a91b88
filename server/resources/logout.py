"""GET/POST /logout: RP-Initiated Logout 1.0."""

from __future__ import annotations

import falcon

from policy_sso.errors import OAuthError
from policy_sso.oidc import logout
from policy_sso.oidc.provider import Provider
from server.browser import Browser
from server.hooks import form_body, query_params
from server.resources.interaction import display_name


def forged() -> OAuthError:
    """The error for a sign-out form that fails its CSRF check (a new one per raise), in plain words."""
    return OAuthError("this page is out of date; reload it and try again", error="access_denied", status=403)


class Logout:
    """The end_session_endpoint; errors are shown, never redirected."""

    html_errors = True

    def __init__(self, provider: Provider, browser: Browser) -> None:
        self.provider = provider
        self.browser = browser

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Handle a logout request sent as query parameters."""
        self._request(req, resp, query_params(req))

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Handle the confirmation form (``logout=yes``) or a logout request sent as a form."""
        form = dict(req.context.form)
        if form.pop("logout", None) != "yes":
            self._request(req, resp, form)
            return
        token = form.pop("csrf_token", None)
        now = req.context.now
        request = logout.validate_logout_request(self.provider, form, now)
        session = self._cookie_session(req)
        if session is not None:
            if not logout.confirmation_ok(self.provider, session, token):
                raise forged()
            logout.log_out(self.provider, session, now, request.client)
            self.browser.clear_session(resp)
        self._finish(req, resp, request)

    def _cookie_session(self, req: falcon.Request):
        session_id = self.browser.session_id(req)
        return self.provider.store.get_session(session_id, req.context.now) if session_id else None

    def _request(self, req: falcon.Request, resp: falcon.Response, params: dict[str, str]) -> None:
        now = req.context.now
        request = logout.validate_logout_request(self.provider, params, now)
        current = self._cookie_session(req)
        if current is None:
            if req.method == "POST" and params.get(logout.RESENT) != "1":
                # a cross-site form post: sent again from here, the browser's cookie (if any) comes
                # along, so a browser with a session is asked or signed out as a GET would have it
                resent = {k: params[k] for k in logout.RESENT_PARAMETERS if params.get(k)}
                resent[logout.RESENT] = "1"
                self.browser.render(resp, "form_post.html", action="/logout", params=resent,
                                    sends_to=request.redirect_uri)  # the logout then answers the app
                return
            self._finish(req, resp, request)  # no session in this browser: nothing to end
            return
        if logout.hinted_session(request, current) is not None:  # the hint's own session: at once
            logout.log_out(self.provider, current, now, request.client)
            self.browser.clear_session(resp)
            self._finish(req, resp, request)
            return
        user = self.provider.user(current.subject)
        self.browser.render(
            resp, "logout.html", csrf=logout.confirmation_token(self.provider, current),
            fields=request.form_fields(), username=user.username if user else "",
            client_name=display_name(request.client) if request.client else "",
            sends_to=request.redirect_uri)

    def _finish(self, req: falcon.Request, resp: falcon.Response, request: logout.LogoutRequest) -> None:
        location = request.location
        if location is None:
            self.browser.render(resp, "signed_out.html")
        else:
            self.browser.redirect(resp, location, after_post=req.method == "POST")
