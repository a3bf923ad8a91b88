"""The middleware: the request's clock reading and id, the headers every response carries, metrics.

Also :func:`complete_methods`, which ``create_app`` applies to every route: HEAD wherever GET is
served, and an OPTIONS answer whose ``Allow`` names the route's real methods.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

import falcon

from policy_sso.audit.writer import bind_request
from policy_sso.metrics import Tally
from server.logs import access_enabled, log_access

# Endpoints a browser app calls with fetch(): readable from any origin, never with cookies. A public
# client may push its request to /par from the browser (RFC 9126 §2.1) as it calls /token.
CORS_PATHS = frozenset({"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                        "/jwks", "/token", "/userinfo", "/revoke", "/introspect", "/par"})
# What a cross-origin call may send (RFC 9449 §4.1: the DPoP proof) and may read back (§8: the
# nonce to put in the next proof; RFC 6750 §3 / RFC 9449 §7.1: why a token was refused).
CORS_ALLOW_HEADERS = "Authorization, Content-Type, DPoP"
CORS_EXPOSE_HEADERS = "DPoP-Nonce, WWW-Authenticate"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Every response: no MIME sniffing, no referrer (codes and states live in URLs).
COMMON_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
# HTML pages: never framed (clickjacking). A page's own policy (server/browser.py: nonce'd scripts,
# base-uri and object-src 'none') is kept; FRAME_ANCESTORS is added to it when it lacks one.
FRAME_ANCESTORS = "frame-ancestors 'none'"
CSP = "Content-Security-Policy"


def route_methods(resource: Any) -> list[str]:
    """Return the methods ``resource`` answers, as Falcon lists them in a 405's ``Allow`` (sorted)."""
    return sorted(m for m in falcon.COMBINED_METHODS
                  if m != "WEBSOCKET" and callable(getattr(resource, f"on_{m.lower()}", None)))


def complete_methods(resource: Any) -> Any:
    """Give a route HEAD where it has GET, and an OPTIONS naming its real methods; return it.

    RFC 9110 §9.3.2: HEAD is answered as GET would be, without the body. The
    GET responder runs as it is; Falcon drops the body of a HEAD response
    and keeps its Content-Length. The OPTIONS answer's ``Allow`` is the
    same list a 405 on the route gives (Falcon builds that one from the
    responders, so both now include HEAD and OPTIONS); the CORS preflight
    reads its ``Access-Control-Allow-Methods`` from it.
    """
    if callable(getattr(resource, "on_get", None)) and getattr(resource, "on_head", None) is None:
        resource.on_head = resource.on_get
    if getattr(resource, "on_options", None) is None:
        allowed = ", ".join(sorted({*route_methods(resource), "OPTIONS"}))

        def on_options(req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
            del req, params
            resp.status = falcon.HTTP_200
            resp.set_header("Allow", allowed)
            resp.set_header("Content-Length", "0")

        resource.on_options = on_options
    return resource


def page_policy(policy: str | None) -> str:
    """Return a page's Content-Security-Policy with ``frame-ancestors 'none'`` merged in (not replaced)."""
    if not policy:
        return FRAME_ANCESTORS
    directives = [d.strip() for d in policy.split(";") if d.strip()]
    if any(d.split()[0].lower() == "frame-ancestors" for d in directives):
        return policy
    return "; ".join([*directives, FRAME_ANCESTORS])


class Envelope:
    """What wraps every request: one clock reading, an id, the security headers, the request count.

    One middleware object rather than several: each costs Falcon a call per
    request per hook, and every request pays for them.
    """

    def __init__(self, clock: Callable[[], int], requests: Tally,
                 address_of: Callable[[falcon.Request], str] | None = None) -> None:
        self.clock = clock
        self.requests = requests
        self.address_of = address_of or (lambda req: req.remote_addr)  # for the access line
        # a per-process prefix and a counter: unique ids for log correlation, no entropy to spend
        self.prefix = secrets.token_hex(4) + "-"
        self.counter = itertools.count(1)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set ``req.context.now`` and ``request_id``; note the language asked for, for the pages."""
        resp.context.accept_language = req.get_header("Accept-Language")  # server/browser.py render
        context = req.context
        context.started = time.perf_counter()
        context.now = int(self.clock())
        context.request_id = f"{self.prefix}{next(self.counter):x}"
        bind_request(req)  # audit events read the request id, address and user agent from it

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        """Add the headers (caching per RFC 6749 §5.1, framing, CORS); count and log the request.

        A resource's own Cache-Control wins.
        """
        del req_succeeded
        resp.set_headers((*COMMON_HEADERS, ("X-Request-Id", getattr(req.context, "request_id", ""))))
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")
        if (resp.content_type or "").startswith("text/html"):
            resp.set_header("X-Frame-Options", "DENY")
            resp.set_header(CSP, page_policy(resp.get_header(CSP)))
        if req.path in CORS_PATHS:
            resp.set_header("Access-Control-Allow-Origin", "*")
            resp.set_header("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)
            if req.method == "OPTIONS":
                resp.set_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
                # the route's own methods (its OPTIONS Allow, see complete_methods), never one it refuses
                allowed = resp.get_header("Allow") or ", ".join(route_methods(resource))
                resp.set_header("Access-Control-Allow-Methods", allowed)
        method = req.method if req.method in METHODS else "other"  # labels stay bounded whatever is sent
        status = resp.status_code
        self.requests.add(req.uri_template or "unmatched", method, str(status))
        context = req.context
        if access_enabled() and hasattr(context, "started"):  # path only, never the query (server/logs.py)
            size = None if resp.stream is not None else len(resp.render_body() or b"")
            ms = (time.perf_counter() - context.started) * 1000
            log_access(context.request_id, (req.method, req.path, status, size, ms, self.address_of(req)))
