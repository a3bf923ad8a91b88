"""The middleware: the request's clock reading and id, the headers every response carries, metrics."""

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

# Endpoints a browser app calls with fetch(): readable from any origin, never with cookies.
CORS_PATHS = frozenset({"/.well-known/openid-configuration", "/jwks", "/token", "/userinfo",
                        "/revoke", "/introspect"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Every response: no MIME sniffing, no referrer (codes and states live in URLs).
COMMON_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
# HTML pages: never framed (clickjacking).
PAGE_HEADERS = (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "frame-ancestors 'none'"))


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
        del resource, req_succeeded
        resp.set_headers((*COMMON_HEADERS, ("X-Request-Id", getattr(req.context, "request_id", ""))))
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")
        if (resp.content_type or "").startswith("text/html"):
            resp.set_headers(PAGE_HEADERS)
        if req.path in CORS_PATHS:
            resp.set_header("Access-Control-Allow-Origin", "*")
            if req.method == "OPTIONS":
                resp.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
                resp.set_header("Access-Control-Allow-Methods", "GET, POST")
        method = req.method if req.method in METHODS else "other"  # labels stay bounded whatever is sent
        status = resp.status_code
        self.requests.add(req.uri_template or "unmatched", method, str(status))
        context = req.context
        if access_enabled() and hasattr(context, "started"):  # path only, never the query (server/logs.py)
            size = None if resp.stream is not None else len(resp.render_body() or b"")
            ms = (time.perf_counter() - context.started) * 1000
            log_access(context.request_id, (req.method, req.path, status, size, ms, self.address_of(req)))
