"""The request an event belongs to: its id, the caller's address and user agent, its route and clock.

The server's middleware binds each request to the thread serving it
(:func:`bind_request`); events emitted while it runs read their request
fields from it, so the flows that emit them need no request parameter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

_USER_AGENT_MAX = 256

_request = threading.local()


def bind_request(req: Any) -> None:
    """Remember the request this thread serves, so events carry its id, address and user agent.

    Called once per request by the server's middleware; the fields are read
    only when an event is emitted.
    """
    _request.req = req


def request_fields(address_of: Callable[[Any], str] | None = None,
                   ) -> tuple[str | None, str | None, str | None, str | None]:
    """Return the current request's (request id, client IP, user agent, route), or Nones outside one.

    ``address_of`` names the client behind trusted proxies (the server's
    ``client_address``); without it the socket's peer is the address.
    """
    req = getattr(_request, "req", None)
    if req is None:
        return None, None, None, None
    try:
        context = req.context
        agent = req.user_agent
        return (getattr(context, "request_id", None), address_of(req) if address_of else req.remote_addr,
                agent[:_USER_AGENT_MAX] if agent else None, req.uri_template or req.path[:_USER_AGENT_MAX])
    except Exception:  # a request object of another shape: the event still counts without them
        return None, None, None, None


# How a session ended (the store's end reason) and through which endpoint -> the logout event type.
_LOGOUT_BY_ENDPOINT = {"/logout": "logout.rp_initiated", "/v1/auth/session/logout": "logout.backend_session",
                       "/v1/auth/logout": "logout.backend_token"}
_LOGOUT_BY_REASON = {"ended_by_admin": "logout.admin", "password_changed": "logout.password_changed",
                     "session_limit": "logout.session_limit"}


def logout_type(reason: str) -> str:
    """Return the ``logout.*`` event type for a session ended for ``reason`` in the current request."""
    if reason in _LOGOUT_BY_REASON:
        return _LOGOUT_BY_REASON[reason]
    endpoint = request_fields()[3]
    if reason == "replaced_by_sign_in":
        return "logout.hint_token" if endpoint == "/authorize" else "logout.user_switch"
    return _LOGOUT_BY_ENDPOINT.get(endpoint or "", "logout.ended")


def wall_clock() -> int:
    """Return the current time in integer epoch seconds."""
    return int(time.time())


def request_now() -> int:
    """Return the current request's clock reading (the server's clock), else the wall clock."""
    req = getattr(_request, "req", None)
    now = getattr(getattr(req, "context", None), "now", None)
    return now if isinstance(now, int) else wall_clock()
