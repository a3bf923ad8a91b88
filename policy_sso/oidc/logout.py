"""RP-Initiated Logout 1.0: validate the logout request, find the session, end it.

The post_logout_redirect_uri must be registered for the client, compared by
exact string (§3: "MUST NOT perform post-logout redirection" otherwise); an
invalid request is shown by the server, never redirected. With a valid
``id_token_hint`` for the browser's user the session ends at once (§2);
otherwise the user confirms first. A hint for another user than the
browser's ends nothing of that user's: this browser's user is asked about
their own session. A POST without the session's cookie (a relying party's
cross-site form post: SameSite=Lax keeps the cookie back) is sent again from
this origin by a page that submits itself, so the browser's cookie comes
along; a request that has no cookie even then ends nothing (a leaked ID token
is no way to sign someone out from elsewhere).
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policy_sso.config import Client
from policy_sso.errors import InvalidRequest
from policy_sso.oidc import tokens
from policy_sso.oidc.account import form_token, form_token_ok
from policy_sso.oidc.provider import Provider, end_session
from policy_sso.sessions.model import Session


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """A validated logout request."""

    client: Client | None
    redirect_uri: str | None
    state: str | None
    hint: dict[str, Any] | None  # the verified id_token_hint's claims

    @property
    def location(self) -> str | None:
        """Return where to send the user afterwards (with ``state``), or None to show a page."""
        if self.redirect_uri is None:
            return None
        if self.state is None:
            return self.redirect_uri
        joiner = "&" if urllib.parse.urlsplit(self.redirect_uri).query else "?"
        return f"{self.redirect_uri}{joiner}{urllib.parse.urlencode({'state': self.state})}"

    def form_fields(self) -> dict[str, str]:
        """Return the parameters to carry through the confirmation form."""
        out = {"client_id": self.client.client_id if self.client else None,
               "post_logout_redirect_uri": self.redirect_uri, "state": self.state}
        return {k: v for k, v in out.items() if v is not None}


def validate_logout_request(p: Provider, params: Mapping[str, str], now: int) -> LogoutRequest:
    """Return the validated request; raise InvalidRequest, which the server shows itself."""
    hint = None
    if params.get("id_token_hint"):
        try:
            # §2: the OP should accept expired ID tokens it issued as hints
            hint = tokens.verify_id_token_hint(p.keyring, params["id_token_hint"], p.issuer, now)
        except Exception:
            raise InvalidRequest("id_token_hint is not a valid ID token of this provider") from None
    client_id = params.get("client_id")
    if hint is not None:
        aud = hint.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        if client_id and client_id not in audiences:
            raise InvalidRequest("client_id does not match the id_token_hint's audience")
        client_id = client_id or (audiences[0] if audiences else None)
    client = p.client(client_id) if client_id else None
    if client_id and client is None:
        raise InvalidRequest("unknown client_id: no client is registered with the one sent")
    redirect_uri = params.get("post_logout_redirect_uri") or None
    if redirect_uri is not None:
        if client is None:
            raise InvalidRequest("post_logout_redirect_uri needs client_id or id_token_hint")
        if redirect_uri not in client.post_logout_redirect_uris:
            raise InvalidRequest("post_logout_redirect_uri is not registered for this client")
    return LogoutRequest(client, redirect_uri, params.get("state"), hint)


def hinted_session(req: LogoutRequest, cookie_session: Session | None) -> Session | None:
    """Return the browser's session when the id_token_hint names its user, else None.

    Only the browser's own session ends on a hint, and only the session the
    hint was issued in (its ``sid``): another user's browser ends nothing of
    the hint's user, and a hint from an earlier session is suspect (§2: the
    OP asks this browser's user instead; §6: a hint must not become a way to
    log others out). A request without the session's cookie ends nothing.
    """
    if req.hint is None or cookie_session is None or cookie_session.subject != req.hint.get("sub"):
        return None
    sid = req.hint.get("sid")
    if sid is not None:
        # §2: a hint from another (earlier) session of the same user is suspect: the user is asked
        join = cookie_session.clients.get(req.client.client_id) if req.client is not None else None
        if join is None or not hmac.compare_digest(join.sid, str(sid)):
            return None
    return cookie_session


# The parameters a cookie-less POST is sent again with, from this origin, so the browser's cookie comes along.
RESENT_PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")
RESENT = "resent"  # the marker that it was: a browser without a session then ends nothing


def confirmation_token(p: Provider, session: Session) -> str:
    """Return the CSRF token for the logout confirmation form, bound to the session.

    The account page's kind (:func:`~policy_sso.oidc.account.form_token`): a
    re-authentication in another tab moves the session to a new id, and must
    not make an open "Sign out?" page fail (leaving the user signed in); a
    sign-out or another user's sign-in does.
    """
    return form_token(p, "logout", session)


def confirmation_ok(p: Provider, session: Session, token: str | None) -> bool:
    """Return whether a submitted confirmation token is this session's (constant time)."""
    return form_token_ok(p, "logout", session, token)


def log_out(p: Provider, session: Session | None, now: int, client: Client | None = None) -> Session | None:
    """End the session (and, through :func:`end_session`, notify its clients); return it.

    ``client``: the relying party whose logout request it is (``client_id`` or
    the id_token_hint's audience), named in the ``logout.rp_initiated`` event.
    """
    if session is None:
        return None
    return end_session(p, session.id, now, client=client.client_id if client is not None else None)
