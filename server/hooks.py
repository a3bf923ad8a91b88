"""Falcon hooks: form bodies, client authentication and bearer tokens (``@falcon.before``)."""

from __future__ import annotations

from typing import Any

import falcon

from policy_sso.errors import InvalidRequest
from policy_sso.oidc import admin, backend
from policy_sso.oidc.authorize import single_valued, without_blanks
from policy_sso.request import loads_json

MAX_FORM_BYTES = 64 * 1024


def _parse(text: str) -> dict[str, str]:
    # falcon's parser (compiled) decodes like urllib.parse.parse_qsl and lists repeated names
    return single_valued(falcon.uri.parse_query_string(text, keep_blank=True, csv=False))


def query_params(req: falcon.Request) -> dict[str, str]:
    """Return the query parameters, refusing repeated ones (RFC 6749 §3.1)."""
    return _parse(req.query_string)


def form_body(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Parse an ``application/x-www-form-urlencoded`` body into ``req.context.form``."""
    del resp, resource, params
    req.context.form = _parse(form_text(req))


def protocol_form_body(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Parse an OAuth endpoint's form body: a parameter sent with no value is omitted (RFC 6749 §3.2).

    The hosted pages keep empty fields (``form_body``): an empty code field
    still says which form was sent.
    """
    form_body(req, resp, resource, params)
    req.context.form = without_blanks(req.context.form)


def form_text(req: falcon.Request) -> str:
    """Return an ``application/x-www-form-urlencoded`` body's text; raise InvalidRequest for anything else."""
    ctype = (req.content_type or "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    raw = req.bounded_stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise InvalidRequest("the request body is too large")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8 form data") from None


def authenticate_client(req: falcon.Request, resp: falcon.Response, resource: Any,
                        params: dict) -> None:
    """Authenticate the calling client into ``req.context.client`` (RFC 6749 §2.3)."""
    del resp, params
    req.context.client = resource.provider.clients.authenticate(
        req.get_header("Authorization"), req.context.form)


MAX_JSON_BYTES = 64 * 1024


def json_body(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Parse an ``application/json`` object body into ``req.context.json``."""
    del resp, resource, params
    ctype = (req.content_type or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise InvalidRequest("the body must be application/json", status=415)
    raw = req.bounded_stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidRequest("the request body is too large", status=413)
    body = loads_json(raw or b"{}")  # depth-bounded, no NaN (issue 14)
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    req.context.json = body


def client_token(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Authenticate the calling client by its ``client_credentials`` access token (Bearer or DPoP)."""
    del resp, params
    req.context.client = backend.calling_client(
        resource.provider, authorization=req.get_header("Authorization"), proof=req.get_header("DPoP"),
        method=req.method, path=req.path, now=req.context.now)


def admin_token(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
    """Admit only the configured admin token (compared in constant time)."""
    header = req.get_header("Authorization") or ""
    scheme, _, token = header.partition(" ")
    admin.check_admin(resource.provider, token.strip() if scheme.lower() == "bearer" else None)
