"""What the server sends a browser: cookies, HTML pages and authorization responses.

Cookies are HttpOnly and SameSite=Lax, and Secure unless the issuer is plain
``http`` (SPEC §4: the demo runs on http://127.0.0.1). Templates auto-escape.
"""

from __future__ import annotations

import hmac
import re
import secrets
import urllib.parse
from typing import Any

import falcon
import jinja2

from policy_sso.messages import Catalogue, default_catalogue
from policy_sso.oidc.authorize import AuthorizationResponse
from policy_sso.oidc.interaction import Interaction, InteractionCodec

SESSION_COOKIE = "psso_session"
MAX_SESSION_ID = 128  # new_session_id makes 43 characters; room for other stores' ids, no more
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]+")  # base64url, what new_session_id makes
# Each pending sign-in has its own cookie, named by its id: a second sign-in started in another tab
# must not take the first one's place (its app would never hear back). Before this, one cookie
# ``psso_interaction`` held the newest only; one set by an earlier version is still read.
INTERACTION_COOKIE = "psso_interaction"
INTERACTION_PREFIX = INTERACTION_COOKIE + "_"
MAX_PENDING_INTERACTIONS = 8  # per browser: the oldest beyond go (each cookie is some 400 bytes)
_INTERACTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what InteractionCodec.new makes (22 characters)
FORM_COOKIE = "psso_form"  # a random value the account sign-in form echoes (double-submit CSRF)
# The sign-ins this browser finished lately (their ids, signed): Back to one of their pages says it
# is complete instead of "this sign-in link does not work". It opens nothing: the interaction is gone.
COMPLETED_COOKIE = "psso_completed"
MAX_COMPLETED = 4  # remembered per browser, the newest kept
# A passkey this browser's session registered on /account (signed for the session): it counts as
# the session having used a factor for the account page, as a TOTP code confirmed there does.
ENROLLED_COOKIE = "psso_enrolled"
_SIGNED_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,2048}")

# A content security policy for the hosted pages: no inline script but the page's own (its nonce),
# no framing (clickjacking), forms only to this server and, from a page of a sign-in or a logout,
# the origin of that client's redirect_uri (see form_action).
CSP = ("default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; "
       "form-action {form_action}")
# What a CSP source expression may name of a redirect_uri (CSP3 §2.3.1): a host (a name, IPv4, or
# IPv6 in brackets) with an optional port, and a scheme; anything else is never written into the header.
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def form_action(sends_to: str | None) -> str | None:
    """Return the CSP ``form-action`` sources of a page whose forms may end at ``sends_to``.

    A form's target and every redirect after its submission are checked
    against ``form-action`` (Chrome applies it to the redirects too), so a
    page whose form answers the app with a 303, or posts to it (form_post),
    lists that redirect_uri's origin (http, https) or its private-use scheme
    (RFC 8252 §7.1, ``com.example.app:``) beside ``'self'``. None when the
    URI cannot be named safely: the page then goes without ``form-action``
    rather than breaking the sign-in; registered URIs are validated, so this
    does not happen with the tenant's own clients.
    """
    if sends_to is None:
        return "'self'"
    parts = urllib.parse.urlsplit(sends_to)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    if scheme not in ("http", "https"):
        return f"'self' {scheme}:"
    if "@" in parts.netloc or not _HOST_PORT.fullmatch(parts.netloc):
        return None
    return f"'self' {scheme}://{parts.netloc.lower()}"


class Browser:
    """Cookie names and flags, the template environment and response delivery."""

    def __init__(self, issuer: str, session_max_age: int, catalogue: Catalogue | None = None) -> None:
        self.secure = issuer.startswith("https://")
        self.session_max_age = session_max_age
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("server", "templates"), autoescape=True,
            undefined=jinja2.ChainableUndefined)
        # what the pages say, per language (policy_sso/messages): chosen per response by its
        # request's Accept-Language, which the Envelope middleware leaves on resp.context
        self.catalogue = catalogue or default_catalogue()

    # --- pages ---------------------------------------------------------------
    def render(self, resp: falcon.Response, template: str, status: int = 200, *, sends_to: str | None = None,
               **context: Any) -> None:
        """Render an HTML page into the response, with a fresh CSP nonce for its own script and style.

        ``sends_to``: the client's redirect_uri where the page's forms may end
        (the sign-in's, the logout's post_logout_redirect_uri); other pages'
        forms stay on this server (:func:`form_action`). The page speaks the
        language the request's ``Accept-Language`` prefers among the
        catalogue's (``t`` and ``lang`` in the template), else English.
        """
        nonce = secrets.token_urlsafe(16)
        lang = self.catalogue.negotiate(getattr(resp.context, "accept_language", None))
        resp.status = status
        resp.content_type = falcon.MEDIA_HTML
        sources = form_action(sends_to)
        policy = CSP.format(nonce=nonce, form_action=sources or "")
        resp.set_header("Content-Security-Policy", policy if sources else policy.rsplit("; ", 1)[0])
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("Content-Language", lang)
        resp.append_header("Vary", "Accept-Language")
        resp.text = self.templates.get_template(template).render(
            nonce=nonce, lang=lang, t=self.catalogue.translator(lang), **context)

    def deliver(self, resp: falcon.Response, response: AuthorizationResponse, *,
                after_post: bool = False) -> None:
        """Send an authorization response: a redirect, or an auto-submitting form (form_post)."""
        location = response.location
        if location is None:
            self.render(resp, "form_post.html", action=response.redirect_uri, params=response.params,
                        sends_to=response.redirect_uri)
            return
        resp.status = falcon.HTTP_303 if after_post else falcon.HTTP_302
        resp.location = location

    def redirect(self, resp: falcon.Response, location: str, *, after_post: bool = False) -> None:
        """Redirect within the server (303 after a form POST so the browser GETs the page)."""
        resp.status = falcon.HTTP_303 if after_post else falcon.HTTP_302
        resp.location = location

    # --- cookies -------------------------------------------------------------
    def form_nonce(self, req: falcon.Request, resp: falcon.Response) -> str:
        """Return the browser's sign-in form nonce (the account page's pre-login CSRF), setting it if new."""
        values = req.get_cookie_values(FORM_COOKIE)
        if values and _SESSION_ID.fullmatch(values[0]) and len(values[0]) <= MAX_SESSION_ID:
            return values[0]
        nonce = secrets.token_urlsafe(24)
        self._cookie(resp, FORM_COOKIE, nonce, 3600)
        return nonce

    def _cookie(self, resp: falcon.Response, name: str, value: str, max_age: int) -> None:
        resp.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure,
                        http_only=True, same_site="Lax")

    def session_id(self, req: falcon.Request) -> str | None:
        """Return the IdP session id the browser presents, if any; a value no session could have is none.

        A 200 KB or non-base64url cookie never reaches the store or a limiter
        key (SPEC §7): it is treated as no session.
        """
        values = req.get_cookie_values(SESSION_COOKIE)
        if not values:
            return None
        value = values[0]
        return value if len(value) <= MAX_SESSION_ID and _SESSION_ID.fullmatch(value) else None

    def set_session(self, resp: falcon.Response, session_id: str) -> None:
        """Set the IdP session cookie."""
        self._cookie(resp, SESSION_COOKIE, session_id, self.session_max_age)

    def clear_session(self, resp: falcon.Response) -> None:
        """Remove the IdP session cookie."""
        resp.unset_cookie(SESSION_COOKIE, path="/", same_site="Lax")

    def interaction(self, req: falcon.Request, codec: InteractionCodec, interaction_id: str | None,
                    now: int) -> Interaction | None:
        """Return the pending interaction the browser's cookie holds for this id, if valid."""
        if not interaction_id or not _INTERACTION_ID.fullmatch(interaction_id):
            return None
        values = (req.get_cookie_values(INTERACTION_PREFIX + interaction_id)
                  or req.get_cookie_values(INTERACTION_COOKIE))
        return codec.open(values[0] if values else None, interaction_id, now)

    def set_interaction(self, req: falcon.Request, resp: falcon.Response, codec: InteractionCodec,
                        interaction: Interaction, now: int) -> None:
        """Store the pending interaction in its own signed cookie, beside the browser's other ones.

        Beyond :data:`MAX_PENDING_INTERACTIONS` the expired and then the oldest
        others are removed, so a browser's cookies stay within the header limit.
        """
        name = INTERACTION_PREFIX + interaction.id
        others = [other for other in req.cookies if other.startswith(INTERACTION_PREFIX) and other != name]
        if len(others) >= MAX_PENDING_INTERACTIONS:
            def age(other: str) -> int:  # an expired or forged one first, then by when it began
                opened = codec.open(req.cookies[other], other.removeprefix(INTERACTION_PREFIX), now)
                return opened.started_at if opened is not None else -1
            for other in sorted(others, key=age)[:len(others) - MAX_PENDING_INTERACTIONS + 1]:
                resp.unset_cookie(other, path="/", same_site="Lax")
        self._cookie(resp, name, codec.seal(interaction), codec.ttl)

    def complete_interaction(self, req: falcon.Request, resp: falcon.Response, codec: InteractionCodec,
                             interaction_id: str) -> None:
        """Remove a sign-in's cookie after its client got a code or tokens, remembering it finished."""
        self.clear_interaction(resp, interaction_id)
        ids = [i for i in self._completed_ids(req, codec) if i != interaction_id]
        ids = [*ids, interaction_id][-MAX_COMPLETED:]
        listed = ".".join(ids)
        self._cookie(resp, COMPLETED_COOKIE, f"{listed}:{codec.tag('completed', listed)}", codec.ttl)

    def completed(self, req: falcon.Request, codec: InteractionCodec, interaction_id: str | None) -> bool:
        """Return whether this browser finished the sign-in ``interaction_id`` lately (its signed list)."""
        return bool(interaction_id) and interaction_id in self._completed_ids(req, codec)

    def _completed_ids(self, req: falcon.Request, codec: InteractionCodec) -> list[str]:
        values = req.get_cookie_values(COMPLETED_COOKIE)
        if not values or not _SIGNED_VALUE.fullmatch(values[0]) or values[0].count(":") != 1:
            return []
        listed, tag = values[0].split(":")
        if not hmac.compare_digest(tag.encode(), codec.tag("completed", listed).encode()):
            return []
        return [i for i in listed.split(".") if _INTERACTION_ID.fullmatch(i)]

    def set_enrolled(self, resp: falcon.Response, value: str) -> None:
        """Remember (for the session's lifetime) a signed note of a factor this session enrolled."""
        self._cookie(resp, ENROLLED_COOKIE, value, self.session_max_age)

    def enrolled(self, req: falcon.Request) -> str | None:
        """Return the signed note :meth:`set_enrolled` left, if any (the caller checks its signature)."""
        values = req.get_cookie_values(ENROLLED_COOKIE)
        return values[0] if values and _SIGNED_VALUE.fullmatch(values[0]) else None

    def clear_interaction(self, resp: falcon.Response, interaction_id: str | None) -> None:
        """Remove an interaction's cookie once its client has its answer."""
        if interaction_id and _INTERACTION_ID.fullmatch(interaction_id):
            resp.unset_cookie(INTERACTION_PREFIX + interaction_id, path="/", same_site="Lax")
        resp.unset_cookie(INTERACTION_COOKIE, path="/", same_site="Lax")  # an earlier version's
