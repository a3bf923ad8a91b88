"""Middleware: the request's clock reading and id, and the headers every response carries."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any

import falcon

# Endpoints a browser app calls with fetch(): readable from any origin, never with cookies.
CORS_PATHS = frozenset({"/.well-known/openid-configuration", "/jwks", "/token", "/userinfo",
                        "/revoke", "/introspect"})


class RequestContext:
    """Read the clock once per request and give the request an id (echoed as X-Request-Id)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        # a per-process prefix and a counter: unique ids for log correlation, no entropy to spend
        self.prefix = secrets.token_hex(4) + "-"
        self.counter = itertools.count(1)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set ``req.context.now``, ``request_id`` and the default error style."""
        del resp
        req.context.now = int(self.clock())
        req.context.request_id = f"{self.prefix}{next(self.counter):x}"
        req.context.html = False

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict) -> None:
        """Let browser-facing resources render errors as HTML pages."""
        del resp, params
        req.context.html = bool(getattr(resource, "html_errors", False))


class SecurityHeaders:
    """Caching, framing and CORS headers (RFC 6749 §5.1 no-store; clickjacking defence)."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        """Add the headers; a resource's own Cache-Control wins."""
        del resource, req_succeeded
        resp.set_header("X-Request-Id", getattr(req.context, "request_id", ""))
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")
        if (resp.content_type or "").startswith("text/html"):
            resp.set_header("X-Frame-Options", "DENY")
            resp.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        if req.path in CORS_PATHS:
            resp.set_header("Access-Control-Allow-Origin", "*")
            if req.method == "OPTIONS":
                resp.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
                resp.set_header("Access-Control-Allow-Methods", "GET, POST")
