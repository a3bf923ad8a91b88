"""GET/POST /account (the user's own sessions, consents, password and factors) and /enrol/totp.

Thin: the actions are :mod:`policy_sso.oidc.account` and :mod:`policy_sso.oidc.enrolment`.
Every form carries a CSRF token bound to the session, one that outlives its
re-authentications (:func:`policy_sso.oidc.account.form_token`), or before
sign-in to a random cookie value (double submit); sensitive actions ask for a
recent sign-in first.
"""

from __future__ import annotations

import hmac
import urllib.parse

import falcon

from policy_sso.credentials import HashingBusy
from policy_sso.errors import OAuthError, RateLimited
from policy_sso.messages import Message
from policy_sso.oidc import account, enrolment, passkeys, sign_in
from policy_sso.oidc.interaction import Interaction
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import Device, Session
from policy_sso.sessions.store import session_key
from server.browser import Browser
from server.client_address import client_address, client_device
from server.hooks import form_body
from server.resources.interaction import display_name, expired, script_json


def forged() -> OAuthError:
    """The error for an account form that fails its CSRF check (a new one per raise).

    In the reader's words: the likely cause is a page left open while the user
    signed out or in as someone else, and a reload is the remedy.
    """
    return OAuthError("this page is out of date; reload it and try again", error="access_denied", status=403)


def _same(a: str | None, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())  # type: ignore[union-attr]


class _AccountBase:
    html_errors = True

    def __init__(self, provider: Provider, browser: Browser) -> None:
        self.provider = provider
        self.browser = browser

    def _session(self, req: falcon.Request) -> Session | None:
        session_id = self.browser.session_id(req)
        return self.provider.store.get_session(session_id, req.context.now) if session_id else None

    def _device(self, req: falcon.Request) -> Device:
        """Return where the browser is, for the session to record."""
        return client_device(req, self.provider.tenant.settings.trusted_proxies)

    def _csrf(self, session: Session) -> str:
        return account.form_token(self.provider, "account", session)

    def _name_of(self, client_id: str) -> str:
        client = self.provider.client(client_id)
        return display_name(client) if client else client_id

    def _username(self, session: Session) -> str:
        user = self.provider.user(session.subject)
        return user.username if user else session.subject


class Account(_AccountBase):
    """The account page; without a (recent enough) session, a sign-in form first."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Show the account page, or what it needs first: a sign-in, or the user's second factor."""
        session = self._session(req)
        if session is None:
            self._sign_in_form(req, resp)
        elif req.get_param("again") or not self._factor_used(req, session):  # again: before a sensitive one
            self._confirm(req, resp, session)
        else:
            self._page(req, resp, session, req.get_param("done") or "")

    def _factor_used(self, req: falcon.Request, session: Session) -> bool:
        """Return whether the session has used one of the user's second factors, if the user has any.

        The account page shows where the user is signed in and changes what
        protects the account: a password alone does not open it for a user
        who has a second factor (as Keycloak's account console asks for it).
        A passkey this session registered here counts, as a TOTP app it
        confirmed here does (that one adds ``otp`` to the session): the user
        who just added their first passkey is not shut out by it.
        """
        proofs = enrolment.factor_proofs(self.provider, session.subject)
        return (not proofs or any(m in proofs for m in session.methods)
                or registered_here(self.provider, self.browser.enrolled(req), session))

    def _confirm(self, req: falcon.Request, resp: falcon.Response, session: Session,
                 message: str = "", status: int = 200) -> None:
        """Ask for what a sensitive action still needs: the password again, else a second factor."""
        p, now = self.provider, req.context.now
        held = enrolment.enrolled_factors(p, session.subject)
        if now - session.auth_time > p.tenant.settings.enrolment.within or not held:
            self._sign_in_form(req, resp, message or Message("message.reauthenticate"),
                               self._username(session), status, again=True)
            return
        passkey = {}
        if "hwk" in held and passkeys.usable(p):
            ceremony = passkeys.authentication(p, now, session.subject)
            passkey = {"passkey_options": script_json(ceremony.options), "passkey_state": ceremony.state}
        self.browser.render(resp, "account_factor.html", status, csrf=self._csrf(session),
                            message=message or Message("message.confirm_with_factor"),
                            has_totp="otp" in held, **passkey)

    def _sign_in_form(self, req: falcon.Request, resp: falcon.Response, message: str = "",
                      username: str = "", status: int = 200, *, again: bool = False) -> None:
        self.browser.render(resp, "account_login.html", status, csrf=self.browser.form_nonce(req, resp),
                            message=message, username=username, again=again)

    def _page(self, req: falcon.Request, resp: falcon.Response, session: Session, message: str = "",
              error: str = "", *, status: int = 200) -> None:
        now = req.context.now
        view = account.overview(self.provider, session, now, self._name_of)
        rule = self.provider.tenant.settings.enrolment
        self.browser.render(
            resp, "account.html", status, view=view, username=self._username(session),
            csrf=self._csrf(session),
            message=DONE.get(message, ""), error=error, now=now, min_password=account.MIN_PASSWORD,
            can_enrol_totp=enrolment.may_enrol(self.provider, session, "otp", now),
            can_enrol_passkey=enrolment.may_enrol(self.provider, session, "hwk", now),
            enrolment_allowed=bool(rule.factors) and rule.allows(session.subject, next(iter(rule.factors))))

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Run one action of the page (each form names its ``action``)."""
        form, now = req.context.form, req.context.now
        action = form.get("action", "")
        session = self._session(req)
        if action == "login":
            self._login(req, resp, session)
            return
        if session is None:
            self._sign_in_form(req, resp, Message("message.session_ended"))
            return
        if not _same(form.get("csrf_token"), self._csrf(session)):
            raise forged()
        if action in ("otp", "passkey"):
            self._second_factor(req, resp, session, action)
            return
        sensitive = action in ("password", "remove_factor")
        if not self._factor_used(req, session) or (
                sensitive and not account.recent_enough(self.provider, session, now)):
            self._confirm(req, resp, session)
            return
        if action == "end_session":
            target = form.get("session", "")
            ended = account.end_own_session(self.provider, session, target, now)
            if ended and target == session_key(session.id):
                self.browser.clear_session(resp)
                self.browser.redirect(resp, "/account", after_post=True)
                return
            self._done(resp, "session_ended" if ended else "session_gone")  # a page left open
        elif action == "withdraw":
            self._done(resp, "consent_withdrawn" if account.withdraw_consent(
                self.provider, session, form.get("client", ""), now) else "consent_gone")
        elif action == "password":
            address = client_address(req, self.provider.tenant.settings.trusted_proxies)
            try:
                moved, message = account.change_password(self.provider, session, form.get("current", ""),
                                                         form.get("new", ""), now, address=address,
                                                         device=self._device(req))
            except (RateLimited, HashingBusy) as refused:
                resp.set_headers(refused.headers)
                message = (Message("message.too_many_attempts", seconds=refused.retry_after)
                           if isinstance(refused, RateLimited) else Message("message.hashing_busy"))
                self._page(req, resp, session, error=message, status=refused.status)
                return
            if moved is None:
                self._page(req, resp, session, error=message)
                return
            self.browser.set_session(resp, moved)
            self._done(resp, "password_changed")
        elif action == "remove_factor":
            message = account.remove_factor(self.provider, session, form.get("factor", ""), now,
                                            self._name_of)
            self._page(req, resp, session, error="" if message.key == "message.factor_removed" else message)
        else:
            raise OAuthError("unknown account action")

    def _done(self, resp: falcon.Response, what: str) -> None:
        # POST-redirect-GET: a reload does not repeat the action
        self.browser.redirect(resp, f"/account?done={what}" if what else "/account", after_post=True)

    def _login(self, req: falcon.Request, resp: falcon.Response, session: Session | None) -> None:
        form, now = req.context.form, req.context.now
        if not _same(form.get("csrf_token"), self.browser.form_nonce(req, resp)):
            raise forged()
        address = client_address(req, self.provider.tenant.settings.trusted_proxies)
        try:
            attempt = sign_in.sign_in_password(self.provider, session.id if session else None,
                                               form.get("username", ""), form.get("password", ""), now,
                                               address=address, device=self._device(req))
        except (RateLimited, HashingBusy) as refused:
            resp.set_headers(refused.headers)
            message = (Message("message.too_many_attempts", seconds=refused.retry_after)
                       if isinstance(refused, RateLimited) else Message("message.hashing_busy"))
            self._sign_in_form(req, resp, message, form.get("username", ""), refused.status)
            return
        if attempt.session_id is None:
            self._sign_in_form(req, resp, attempt.message, form.get("username", ""))
            return
        self.browser.set_session(resp, attempt.session_id)
        self.browser.redirect(resp, "/account", after_post=True)  # a user with a factor is asked for it there

    def _second_factor(self, req: falcon.Request, resp: falcon.Response, session: Session,
                       kind: str) -> None:
        """Add a second factor to the session: a TOTP code, or a passkey's assertion (WebAuthn §7.2)."""
        form, now = req.context.form, req.context.now
        address = client_address(req, self.provider.tenant.settings.trusted_proxies)
        try:
            if kind == "otp":
                attempt = sign_in.sign_in_otp(self.provider, session, form.get("otp", ""), now, address,
                                              device=self._device(req))
                moved, message = attempt.session_id, attempt.message
            else:
                moved, message = passkeys.sign_in_with_passkey(
                    self.provider, session.id, form.get("passkey", ""), form.get("passkey_state", ""), now,
                    address=address, device=self._device(req))
        except RateLimited as refused:
            resp.set_headers(refused.headers)
            self._confirm(req, resp, session, Message("message.too_many_attempts",
                                                      seconds=refused.retry_after), refused.status)
            return
        if moved is None:
            self._confirm(req, resp, session, message)
            return
        self.browser.set_session(resp, moved)
        self.browser.redirect(resp, "/account", after_post=True)


def registration_note(p: Provider, session: Session, store_id: str) -> str:
    """Return the signed note that this session registered the passkey ``store_id`` (a cookie's value)."""
    signed = "\0".join((session.subject, str(session.created_at), store_id))
    return f"{store_id}.{p.codec.tag('passkey registered', signed)}"


def registered_here(p: Provider, note: str | None, session: Session) -> bool:
    """Return whether ``note`` says this session registered a passkey the user still has.

    The note is signed for the session (its subject and ``created_at``, which
    its re-authentications keep), so no other browser or session can claim it.
    """
    if not note or "." not in note:
        return False
    store_id = note.rpartition(".")[0]
    return (_same(note, registration_note(p, session, store_id))
            and store_id in passkeys.passkeys_of(p, session.subject))


# what the page says after each action (POST-redirect-GET: the action's name rides in ?done=)
DONE = {"session_ended": "message.session_ended_done", "consent_withdrawn": "message.consent_withdrawn",
        "password_changed": "message.password_changed", "totp_enrolled": "message.totp_enrolled",
        "passkey_added": "message.passkey_added",
        # an older page's button: what it would have done is done already, or was never there
        "session_gone": "message.session_already_ended", "consent_gone": "message.consent_already_withdrawn"}


class EnrolTotp(_AccountBase):
    """GET/POST /enrol/totp: a QR code, confirmed by a first code; from /account or while signing in."""

    factor = "otp"

    def _context(self, req: falcon.Request) -> tuple[Session, Interaction | None]:
        session = self._session(req)
        interaction = None
        interaction_id = req.get_param("interaction") or getattr(req.context, "form", {}).get("interaction")
        if interaction_id:
            interaction = self.browser.interaction(req, self.provider.codec, interaction_id, req.context.now)
            if interaction is None:
                raise expired()
        if session is None:
            if interaction is None:  # from the account page, signed out since: sign in there again
                raise falcon.HTTPSeeOther("/account")
            raise expired()
        if self.factor == "hwk" and "hwk" in self.provider.tenant.settings.methods \
                and not passkeys.usable(self.provider):  # signing in again would not help: say why
            raise OAuthError("passkeys need this server to be reached by a host name, and its address is "
                             "an IP address; ask your administrator", error="access_denied", status=403)
        if not enrolment.may_enrol(self.provider, session, self.factor, req.context.now):
            raise OAuthError("adding this kind of factor is not allowed for this account now; "
                             "sign in again or ask your administrator", error="access_denied", status=403)
        return session, interaction

    @staticmethod
    def _sends_to(interaction: Interaction | None) -> str | None:
        """Return where the page's form may end: enrolled while signing in, the sign-in goes on to the app."""
        return interaction.params.get("redirect_uri") if interaction else None

    def _csrf_for(self, session: Session, interaction: Interaction | None) -> str:
        return interaction.csrf if interaction else self._csrf(session)

    def _posted(self, req: falcon.Request) -> tuple[Session, Interaction | None]:
        """Return the session and interaction of a POST carrying their CSRF token; else refuse it."""
        session, interaction = self._context(req)
        if not _same(req.context.form.get("csrf_token"), self._csrf_for(session, interaction)):
            raise forged()
        return session, interaction

    def _enrolled(self, resp: falcon.Response, interaction: Interaction | None, done: str) -> None:
        """Redirect back to the sign-in being completed, or else to the account page saying ``done``."""
        if interaction is not None:  # the sign-in now offers the new factor: enrolling is not signing in
            query = urllib.parse.urlencode({"interaction": interaction.id})
            self.browser.redirect(resp, f"/login?{query}", after_post=True)
        else:
            self.browser.redirect(resp, f"/account?done={done}", after_post=True)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Show a new secret as a QR code and the form for its first code."""
        session, interaction = self._context(req)
        self._show(req, resp, session, interaction, enrolment.new_totp_secret())

    def _show(self, req: falcon.Request, resp: falcon.Response, session: Session,
              interaction: Interaction | None, secret: str, *, message: str = "") -> None:
        now = req.context.now
        uri = enrolment.provisioning_uri(self.provider, self._username(session), secret)
        self.browser.render(resp, "enrol_totp.html", qr=enrolment.qr_svg(uri), secret=secret,
                            replaces=enrolment.has_totp(self.provider, session.subject),
                            pending=enrolment.seal_pending(self.provider, session.subject, secret, now),
                            csrf=self._csrf_for(session, interaction), message=message,
                            interaction_id=interaction.id if interaction else "",
                            sends_to=self._sends_to(interaction))

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Enrol the secret when the code matches; then back to the sign-in or the account page."""
        session, interaction = self._posted(req)
        form, now = req.context.form, req.context.now
        secret = enrolment.open_pending(self.provider, session.subject, form.get("pending", ""), now)
        if secret is None:
            self._show(req, resp, session, interaction, enrolment.new_totp_secret(),
                       message=Message("message.qr_expired"))
            return
        moved = account.enrolled_with_code(self.provider, session, secret, form.get("otp", ""), now,
                                           device=self._device(req))
        if moved is None:
            self._show(req, resp, session, interaction, secret,
                       message=Message("message.enrol_code_invalid"))
            return
        self.browser.set_session(resp, moved.id)
        self._enrolled(resp, interaction, "totp_enrolled")


class EnrolPasskey(EnrolTotp):
    """GET/POST /enrol/passkey: create a passkey (WebAuthn §7.1); from /account or while signing in."""

    factor = "hwk"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Show the page whose script creates the passkey."""
        session, interaction = self._context(req)
        self._show_passkey(req, resp, session, interaction)

    def _show_passkey(self, req: falcon.Request, resp: falcon.Response, session: Session,
                      interaction: Interaction | None, message: str = "") -> None:
        ceremony = passkeys.registration(self.provider, session, self._username(session), req.context.now)
        self.browser.render(resp, "enrol_passkey.html", passkey_options=script_json(ceremony.options),
                            passkey_state=ceremony.state, csrf=self._csrf_for(session, interaction),
                            message=message, interaction_id=interaction.id if interaction else "",
                            sends_to=self._sends_to(interaction))

    @falcon.before(form_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Verify and store the passkey; then back to the sign-in (to use it) or the account page."""
        session, interaction = self._posted(req)
        form, now = req.context.form, req.context.now
        try:
            store_id = passkeys.register(self.provider, session, form.get("passkey", ""),
                                         form.get("passkey_state", ""), now,
                                         label=form.get("label", "Passkey"))
        except passkeys.PasskeyRefused as refused:
            self._show_passkey(req, resp, session, interaction, refused.message)
            return
        if interaction is None:  # the account page opens for the session that added it (a first factor)
            self.browser.set_enrolled(resp, registration_note(self.provider, session, store_id))
        self._enrolled(resp, interaction, "passkey_added")
