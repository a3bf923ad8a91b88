"""server/openapi.json is kept in step with the routes create_app serves (issue 15).

Every JSON route of the app is documented with exactly the methods it
answers, and every documented path is a route; every operation shares the
one Error schema for the statuses it does not list, so an error any test
provokes is described. tests/integration/test_it_openapi.py runs schemathesis
against a live server with this document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import falcon.testing
import jsonschema
import pytest

from server.resources.openapi import load_document

# Routes that are not JSON APIs, each with why it is left out of the document. Browser pages (resources
# with ``html_errors``: /authorize, /login, /consent, /logout, …) are left out without being listed.
NOT_DOCUMENTED = {
    "/.well-known/openid-configuration": "discovery is described by OpenID Connect Discovery itself",
    "/.well-known/oauth-authorization-server": "the same metadata, as RFC 8414 names it",
    "/jwks": "a JWK Set (RFC 7517), described by discovery",
    "/userinfo": "OIDC Core §5.3; described by discovery",
    "/metrics": "Prometheus text format",
    "/openapi.json": "the document itself",
    "/favicon.ico": "an image for browsers",
    "/account": "HTML pages (the user's account)",
    "/enrol/totp": "HTML form (authenticator app enrolment)",
    "/enrol/passkey": "HTML page running the WebAuthn registration ceremony (W3C WebAuthn §7.1)",
}
VERBS = ("get", "post", "put", "patch", "delete")


def _routes(app: falcon.App) -> Iterator[tuple[str, Any]]:
    """Yield (URI template, resource) for every route the app's router holds."""
    stack = list(app._router._roots)
    while stack:
        node = stack.pop()
        if node.resource is not None:
            yield node.uri_template, node.resource
        stack.extend(node.children)


def _methods(resource: Any) -> set[str]:
    return {verb for verb in VERBS if callable(getattr(resource, f"on_{verb}", None))}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return json.loads(load_document())


def test_every_json_route_is_documented_with_its_methods(client: falcon.testing.TestClient,
                                                         document: dict[str, Any]) -> None:
    served = {path: _methods(resource) for path, resource in _routes(client.app)
              if not getattr(resource, "html_errors", False)}
    expected = {path: methods for path, methods in served.items() if path not in NOT_DOCUMENTED}
    documented = {path: {verb for verb in item if verb in VERBS} for path, item in document["paths"].items()}
    assert documented == expected


def test_every_operation_shares_the_error_schema(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "error_description"]
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}, (path, verb)
            assert operation["operationId"], (path, verb)


def test_the_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    assert document["openapi"].startswith("3.1")
    validator.validate(document)
    # every schema in it is a valid JSON Schema (2020-12, which OpenAPI 3.1 uses)
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_served_at_openapi_json(client: falcon.testing.TestClient, document: dict[str, Any]) -> None:
    resp = client.simulate_get("/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json == document


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_answers_match_their_schemas(client: falcon.testing.TestClient, document: dict[str, Any],
                                            path: str) -> None:
    resp = client.simulate_get(path)
    schema = document["paths"][path]["get"]["responses"][str(resp.status_code)]["content"][
        "application/json"]["schema"]
    resolver = {"components": document["components"], **schema}
    jsonschema.Draft202012Validator(resolver).validate(resp.json)
