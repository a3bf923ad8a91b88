"""GET/POST /login (password and one-time code) and /consent: the hosted pages."""

from __future__ import annotations

import hmac
import urllib.parse
from dataclasses import replace

import falcon

from policy_sso.config import Client
from policy_sso.credentials import HashingBusy
from policy_sso.errors import AccessDenied, OAuthError, RateLimited
from policy_sso.messages import Message
from policy_sso.oidc import enrolment, passkeys, sign_in
from policy_sso.oidc.authorization_flow import Answer, Interact
from policy_sso.oidc.claims import SCOPE_DESCRIPTIONS
from policy_sso.oidc.interaction import Interaction
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import Device
from server.browser import Browser
from server.client_address import client_address, client_device, policy_client_ip
from server.hooks import form_body


def display_name(client: Client) -> str:
    """Return the name people see for a client: clients.yaml ``client_name``, else its note, else its id."""
    return client.client_name or client.name or client.client_id


def scope_description(p: Provider, scope: str) -> str:
    """Return what the consent page says a scope allows: tenant.yaml's description, else the standard one."""
    return p.tenant.settings.scope_descriptions.get(scope) or SCOPE_DESCRIPTIONS.get(scope, "")


def script_json(text: str) -> str:
    """Return JSON safe inside a <script> element ("</" cannot close it)."""
    return text.replace("</", "<\\/")


def expired() -> OAuthError:
    """The error for a sign-in whose interaction is gone.

    A new one per raise: a raised exception keeps its traceback, and with it
    the request's frames and data, for as long as the exception lives.
    """
    return OAuthError("this sign-in has expired or was not started here; go back to the "
                      "application and start again", error="invalid_request")


def forged() -> OAuthError:
    """The error for a form that fails its CSRF check, in the reader's words."""
    return OAuthError("this form did not come from this sign-in page, or the page is out of date; "
                      "reload it and try again", error="access_denied", status=403)


def shown_tag(p: Provider, interaction: Interaction, subject: str) -> str:
    """Return the consent form's note of whom it was shown to (keyed: only this server makes one).

    The session cookie may change under an open consent page (another tab
    signs someone else in); the decision counts only for the user the page
    named (OIDC Core §3.1.2.4: consent is the end-user's).
    """
    return p.codec.tag("consent shown", f"{interaction.id}\0{subject}")


class _Page:
    html_errors = True

    def __init__(self, provider: Provider, browser: Browser) -> None:
        self.provider = provider
        self.browser = browser

    def _interaction(self, req: falcon.Request, resp: falcon.Response) -> Interaction | None:
        """Return the browser's pending interaction the request names; None once it is shown complete.

        A sign-in this browser finished lately (Back from the app to its
        pages) gets a page saying so rather than the error of an unknown or
        expired one; it is no less over: nothing of it can be used again.
        """
        form = getattr(req.context, "form", {})
        interaction_id = req.get_param("interaction") or form.get("interaction")
        found = self.browser.interaction(req, self.provider.codec, interaction_id, req.context.now)
        if found is None:
            if self.browser.completed(req, self.provider.codec, interaction_id):
                self.browser.render(resp, "sign_in_complete.html")
                return None
            raise expired()
        if req.method == "POST" and not found.csrf_ok(form.get("csrf_token")):
            raise forged()
        return found

    def _page(self, req: falcon.Request, interaction: Interaction, session_id: str | None, now: int,
              *, consented: bool = False) -> sign_in.Page:
        """Return the interaction's current page, decided for the client address of this request."""
        tenant = self.provider.tenant
        address = policy_client_ip(req, tenant.settings.trusted_proxies) if tenant.tests_networks else None
        return sign_in.current_page(self.provider, interaction, session_id, now, consented=consented,
                                    client_ip=address)

    def _device(self, req: falcon.Request) -> Device:
        """Return where the browser is, for the session to record (shown on /account)."""
        return client_device(req, self.provider.tenant.settings.trusted_proxies)

    def _proceed(self, req: falcon.Request, resp: falcon.Response, page: sign_in.Page,
                 interaction: Interaction) -> None:
        result = sign_in.proceed(self.provider, page, interaction, req.context.now)
        after_post = req.method == "POST"
        if isinstance(result, Answer):
            self.browser.complete_interaction(req, resp, self.provider.codec, interaction.id)
            self.browser.deliver(resp, result.response, after_post=after_post)
            return
        assert isinstance(result, Interact)
        query = urllib.parse.urlencode({"interaction": interaction.id})
        self.browser.redirect(resp, f"/{result.page}?{query}", after_post=after_post)

    def _client_name(self, page: sign_in.Page) -> str:
        return display_name(page.request.client)

    def _username(self, subject: str | None) -> str:
        user = self.provider.user(subject) if subject else None
        return user.username if user else ""

    def _consent_page(self, resp: falcon.Response, page: sign_in.Page, interaction: Interaction,
                      message: str = "") -> None:
        """Show the scopes the client asks for and Allow / Deny, for the session's user."""
        assert page.session is not None
        remedy = page.step.decision.remedy
        names = dict.fromkeys([*page.request.consent_scopes, *(remedy.scopes if remedy else ())])
        scopes = [{"name": s, "description": scope_description(self.provider, s)} for s in names]
        self.browser.render(resp, "consent.html", client_name=self._client_name(page),
                            username=self._username(page.session.subject), scopes=scopes,
                            interaction_id=interaction.id, csrf=interaction.csrf, message=message,
                            shown=shown_tag(self.provider, interaction, page.session.subject),
                            sends_to=page.request.target.redirect_uri)


class Login(_Page):
    """The password form, and the one-time-code form when a second factor is asked for."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Show the form the interaction needs next (or move on if none is needed)."""
        interaction = self._interaction(req, resp)
        if interaction is None:
            return
        page = self._page(req, interaction, self.browser.session_id(req),
                                    req.context.now)
        if page.step.kind in ("login", "otp"):
            self._show(req, resp, page, interaction, now=req.context.now)
        elif page.step.kind == "factor":
            self._factor_page(resp, page, interaction, req.context.now)
        else:
            self._proceed(req, resp, page, interaction)

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Check a password or a one-time code; re-show the form with a message when wrong."""
        interaction = self._interaction(req, resp)
        if interaction is None:
            return
        form, now = req.context.form, req.context.now
        session_id = self.browser.session_id(req)
        if form.get("cancel") == "yes":  # "back to the app" from the factor page: the app hears why
            self._cancel(req, resp, interaction)
            return
        if form.get("passkey"):  # the passkey form's answer (empty when a script merged both forms' fields)
            self._passkey(req, resp, interaction)
            return
        if "otp" in form:
            session = self.provider.store.get_session(session_id, now) if session_id else None
            if session is None:
                page = self._page(req, interaction, None, now)
                self._show(req, resp, page, interaction, Message("message.session_ended"), now=now)
                return
        address = client_address(req, self.provider.tenant.settings.trusted_proxies)
        try:
            if "otp" in form:
                attempt = sign_in.sign_in_otp(self.provider, session, form["otp"], now, address,
                                              device=self._device(req),
                                              client_id=interaction.params.get("client_id"))
            else:
                attempt = sign_in.sign_in_password(self.provider, session_id, form.get("username", ""),
                                                   form.get("password", ""), now,
                                                   client_id=interaction.params.get("client_id"),
                                                   address=address, device=self._device(req))
        except (RateLimited, HashingBusy) as refused:
            # the form again, with the wait, as a 429 (throttled) or 503 (every hashing slot busy) page:
            # the person reads it, a script sees the status; never a redirect
            page = self._page(req, interaction, session_id, now)
            resp.set_headers(refused.headers)
            message = (Message("message.too_many_attempts", seconds=refused.retry_after)
                       if isinstance(refused, RateLimited) else Message("message.hashing_busy"))
            self._show(req, resp, page, interaction, message, username=form.get("username", ""),
                       status=refused.status, now=now, code_form="otp" in form)
            return
        if attempt.session_id is None:
            page = self._page(req, interaction, session_id, now)
            self._show(req, resp, page, interaction, attempt.message, username=form.get("username", ""),
                       now=now, code_form="otp" in form)
            return
        self.browser.set_session(resp, attempt.session_id)
        if "otp" not in form:
            interaction = interaction.after_sign_in()
            self.browser.set_interaction(req, resp, self.provider.codec, interaction, req.context.now)
        page = self._page(req, interaction, attempt.session_id, now)
        self._proceed(req, resp, page, interaction)

    def _passkey(self, req: falcon.Request, resp: falcon.Response, interaction: Interaction) -> None:
        """Sign in (or add the second factor) with a passkey's assertion (WebAuthn §7.2)."""
        form, now = req.context.form, req.context.now
        session_id = self.browser.session_id(req)
        address = client_address(req, self.provider.tenant.settings.trusted_proxies)
        try:
            new_id, message = passkeys.sign_in_with_passkey(
                self.provider, session_id, form.get("passkey", ""), form.get("passkey_state", ""), now,
                client_id=interaction.params.get("client_id"), address=address, device=self._device(req))
        except RateLimited as refused:
            resp.set_headers(refused.headers)
            page = self._page(req, interaction, session_id, now)
            wait = Message("message.too_many_attempts", seconds=refused.retry_after)
            self._show(req, resp, page, interaction, wait, status=refused.status, now=now)
            return
        if new_id is None:
            page = self._page(req, interaction, session_id, now)
            self._show(req, resp, page, interaction, message, now=now)
            return
        self.browser.set_session(resp, new_id)
        interaction = interaction.after_sign_in()  # a fresh authentication, as a password is
        self.browser.set_interaction(req, resp, self.provider.codec, interaction, req.context.now)
        page = self._page(req, interaction, new_id, now)
        self._proceed(req, resp, page, interaction)

    def _factor_page(self, resp: falcon.Response, page: sign_in.Page, interaction: Interaction,
                     now: int, message: str = "") -> None:
        """Show what the app requires that the user has no factor for, and what they can do."""
        assert page.session is not None
        needs = enrolment.factor_needs(self.provider, page, interaction, now)
        self.browser.render(resp, "factor_required.html", client_name=self._client_name(page),
                            username=self._username(page.session.subject), needs=needs,
                            # what the page says of the session: a password alone, or more already
                            password_only=set(page.session.methods) <= {"pwd"},
                            interaction_id=interaction.id, csrf=interaction.csrf, message=message,
                            sends_to=page.request.target.redirect_uri)

    def _cancel(self, req: falcon.Request, resp: falcon.Response, interaction: Interaction) -> None:
        """Send the app the decision's error: the user chose to go back without the factor."""
        now = req.context.now
        page = self._page(req, interaction, self.browser.session_id(req), now)
        if page.step.kind in ("otp", "factor", "fail"):
            page = sign_in.Page(page.request, page.session, replace(page.step, kind="fail"))
        self.browser.clear_interaction(resp, interaction.id)
        self._proceed(req, resp, page, interaction)

    def _show(self, req: falcon.Request, resp: falcon.Response, page: sign_in.Page, interaction: Interaction,
              message: str = "", *, username: str = "", status: int = 200, now: int | None = None,
              code_form: bool = False) -> None:
        """Show the form the interaction needs, with ``message``.

        A one-time code refused (``code_form``) on a page left open, once
        another tab has taken the interaction past that step, shows the page
        it is at now (consent, the factor page) saying the step is done, or
        moves on as a reload would. A refused password or passkey shows its
        form again: the person was signing in, perhaps as someone else.
        """
        if code_form and page.session is not None and page.step.kind not in ("login", "otp"):
            self._past_step(req, resp, page, interaction, now if now is not None else req.context.now)
            return
        common = {"client_name": self._client_name(page), "interaction_id": interaction.id,
                  "csrf": interaction.csrf, "message": message, "status": status,
                  "sends_to": page.request.target.redirect_uri}
        when = now if now is not None else interaction.started_at  # the passkey challenge's time
        if page.step.kind == "otp" and page.session is not None:
            subject = page.session.subject
            if passkeys.usable(self.provider) and passkeys.passkeys_of(self.provider, subject):
                ceremony = passkeys.authentication(self.provider, when, subject)
                common.update(passkey_options=script_json(ceremony.options), passkey_state=ceremony.state)
            # the code form only where a code clears the step: a level that needs a hardware key is
            # asked of the passkey alone (a code would re-show this page, saying nothing)
            self.browser.render(resp, "otp.html", username=self._username(subject),
                                has_totp="otp" in page.step.factors, **common)
            return
        if passkeys.usable(self.provider):
            ceremony = passkeys.authentication(self.provider, when)
            common.update(passkey_options=script_json(ceremony.options), passkey_state=ceremony.state)
        request = page.request.policy_request
        hinted = self._username(request.id_token_hint_sub or request.login_hint_sub)
        if not message and "subject_mismatch" in page.step.decision.codes and page.session:
            message = Message("message.other_account")
            common["message"] = message
        elif not message and "amr_missing" in page.step.decision.codes and page.session:
            # signed in (a passkey, say), yet the policy asks for a password too: say so, not nothing
            hinted = hinted or self._username(page.session.subject)
            common["message"] = Message("message.password_too", username=hinted,
                                        client=self._client_name(page))
        self.browser.render(resp, "login.html", username=username or hinted or
                            (request.login_hint or ""), **common)

    def _past_step(self, req: falcon.Request, resp: falcon.Response, page: sign_in.Page,
                   interaction: Interaction, now: int) -> None:
        """Show the page of a step after sign-in, saying the one the form was for is done; else move on."""
        done = Message("message.step_done_elsewhere")
        if page.step.kind == "consent":
            self._consent_page(resp, page, interaction, done)
        elif page.step.kind == "factor":
            self._factor_page(resp, page, interaction, now, done)
        else:  # complete, or a failure only the app can be told of: as a reload would
            self._proceed(req, resp, page, interaction)


class Consent(_Page):
    """The consent page: the scopes asked for, and Allow / Deny."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Show the scopes, or move on when consent is not what the interaction needs."""
        interaction = self._interaction(req, resp)
        if interaction is None:
            return
        page = self._page(req, interaction, self.browser.session_id(req),
                                    req.context.now)
        if page.step.kind != "consent" or page.session is None:
            self._proceed(req, resp, page, interaction)
            return
        self._consent_page(resp, page, interaction)

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Record the user's decision; ``deny`` sends access_denied to the client.

        The decision is the user's the page named: when the browser's session
        is someone else's now (another tab signed them in), nothing is
        recorded or sent, and the page is shown again for who is signed in.
        The page's note of that user is checked when the form carries one.
        """
        interaction = self._interaction(req, resp)
        if interaction is None:
            return
        now = req.context.now
        decision = req.context.form.get("decision")
        if decision not in ("allow", "deny"):
            raise OAuthError("decision must be allow or deny")
        session_id = self.browser.session_id(req)
        page = self._page(req, interaction, session_id, now)
        if page.session is None:
            self._proceed(req, resp, page, interaction)
            return
        # the hosted page always names its user; a script that posts the decision without having been
        # shown a page (SPEC §4: decision and the CSRF token) has nothing to bind, and keeps working
        shown = req.context.form.get("shown")
        if shown and not hmac.compare_digest(
                shown.encode(), shown_tag(self.provider, interaction, page.session.subject).encode()):
            if page.step.kind in ("consent", "complete"):  # asked again, of the user signed in now
                username = self._username(page.session.subject)
                self._consent_page(resp, page, interaction,
                                   Message("message.consent_other_user", username=username))
            else:  # the sign-in or a second factor first: that page asks for it
                self._proceed(req, resp, page, interaction)
            return
        if decision == "deny":
            self.provider.audit.record("consent.denied", now, outcome="denied", subject=page.session.subject,
                                       client=page.request.client.client_id, session_id=page.session.id)
            self.browser.clear_interaction(resp, interaction.id)
            response = page.request.target.error(AccessDenied("the user denied access"))
            self.browser.deliver(resp, response, after_post=True)
            return
        if page.step.kind == "consent":
            sign_in.grant_consent(self.provider, page, now)
        page = self._page(req, interaction, session_id, now, consented=True)
        self._proceed(req, resp, page, interaction)


# A small key in the brand colour: the pages' icon, so browsers stop asking for a 404.
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
           b'<rect width="32" height="32" rx="6" fill="#1a5fb4"/>'
           b'<circle cx="12" cy="16" r="5" fill="none" stroke="#fff" stroke-width="3"/>'
           b'<path d="M17 16h10m-3 0v4m-3-4v3" stroke="#fff" stroke-width="3" fill="none"/></svg>')


class Favicon:
    """GET /favicon.ico: the hosted pages' icon (SVG), cached for a day."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the icon."""
        resp.content_type = "image/svg+xml"
        resp.set_header("Cache-Control", "public, max-age=86400")
        resp.data = FAVICON
