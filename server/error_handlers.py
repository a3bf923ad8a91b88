"""The one error handler: library errors become OIDC/JSON errors or pages, never a 500.

- AuthorizationError: delivered to the client's validated redirect_uri.
- OAuthError: its ``error``/``status``/headers as JSON (RFC 6749 §5.2), or an
  HTML page on browser-facing endpoints (an unverified redirect_uri is never
  redirected to, RFC 9700 §4.1.1).
- StoreUnavailable (the store down, restarting or slow; SPEC §7): 503
  ``temporarily_unavailable`` with ``Retry-After``, as JSON, as a page, or at
  the verified redirect_uri when it came wrapped in an AuthorizationError; one
  warning line with the request id, never a traceback.
- Falcon's own HTTP errors (404, 405, bad media): the same JSON shape.
- Anything else: logged without the query string or body (which carry codes,
  tokens and passwords) and answered with a generic error.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from policy_sso.errors import OAuthError, StoreError, StoreUnavailable
from policy_sso.oidc.authorize import AuthorizationError
from server.browser import Browser

log = logging.getLogger("policy_sso.server")

HTTP_ERROR_CODES = {401: "invalid_token", 403: "access_denied", 404: "not_found",
                    405: "method_not_allowed", 429: "temporarily_unavailable",
                    503: "temporarily_unavailable"}


def _render(req: falcon.Request, resp: falcon.Response, browser: Browser, pages: frozenset[str], status: int,
            *, error: str, description: str, headers: dict[str, str] | None = None,
            extra: dict[str, Any] | None = None) -> None:
    for name, value in (headers or {}).items():
        resp.set_header(name, value)
    if req.uri_template in pages:
        browser.render(resp, "error.html", status, error=error, description=description,
                       request_id=getattr(req.context, "request_id", ""),
                       page=(req.uri_template or "").strip("/").replace("/", "_"))
        return
    resp.status = status
    resp.media = {**(extra or {}), "error": error, "error_description": description}


def _log_store_fault(req: falcon.Request, fault: StoreUnavailable) -> None:
    # a fault of the store, not a bug: one line to correlate by request id, no traceback
    log.warning("store unavailable on %s %s [%s]: %s", req.method, req.path,
                getattr(req.context, "request_id", "-"), fault.reason)


def error_handler(browser: Browser, pages: frozenset[str]) -> Any:
    """Return the app's error handler bound to the page renderer; ``pages``: routes answering in HTML."""

    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        del params
        try:
            if isinstance(ex, AuthorizationError):
                if isinstance(ex.error, StoreUnavailable):
                    _log_store_fault(req, ex.error)
                form = getattr(req.context, "form", None) or {}
                browser.clear_interaction(resp, req.get_param("interaction") or form.get("interaction"))
                browser.deliver(resp, ex.response, after_post=req.method == "POST")
            elif isinstance(ex, StoreUnavailable):
                _log_store_fault(req, ex)
                _render(req, resp, browser, pages, ex.status, error=ex.error, description=ex.description,
                        headers=ex.headers)
            elif isinstance(ex, OAuthError):
                _render(req, resp, browser, pages, ex.status, error=ex.error, description=ex.description,
                        headers=ex.headers, extra=ex.extra)
            elif isinstance(ex, falcon.HTTPError):
                status = ex.status_code
                _render(req, resp, browser, pages, status,
                        error=HTTP_ERROR_CODES.get(status, "invalid_request"),
                        description=str(ex.description or ex.title), headers=dict(ex.headers or {}))
            elif isinstance(ex, StoreError):
                log.error("store unavailable on %s %s [%s]: %s", req.method, req.path,
                          getattr(req.context, "request_id", "-"), type(ex).__name__)
                _render(req, resp, browser, pages, 503, error="temporarily_unavailable",
                        description="the session store is unavailable; try again shortly",
                        headers={"Retry-After": "5"})
            else:
                log.exception("unhandled error on %s %s [%s]", req.method, req.path,
                              getattr(req.context, "request_id", "-"))
                _render(req, resp, browser, pages, 400, error="invalid_request",
                        description="the request could not be processed")
        except Exception:  # the handler itself must never fail into a 500
            log.exception("error handler failed on %s %s", req.method, req.path)
            resp.status = 400
            resp.content_type = falcon.MEDIA_JSON
            resp.text = '{"error":"invalid_request","error_description":"the request could not be processed"}'

    return handle


def register(app: falcon.App, browser: Browser, pages: frozenset[str]) -> None:
    """Install the handler for every exception, Falcon's HTTP errors included.

    Errors on the routes in ``pages`` (browser-facing) are shown as HTML pages, others as JSON.
    """
    handler = error_handler(browser, pages)
    app.add_error_handler(Exception, handler)
    app.add_error_handler(falcon.HTTPError, handler)
