"""Unit checks behind tests/integration/test_it_conformance_fixes.py (a conformance probe's findings)."""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import falcon
import falcon.testing
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from policy_sso.errors import InvalidRequest
from policy_sso.oidc.backchannel import BackchannelNotifier, LogoutTarget
from policy_sso.oidc.discovery import discovery_document
from policy_sso.oidc.logout_token import mint_logout_token
from policy_sso.request import AuthRequest
from policy_sso.tenant import Tenant
from server.browser import form_action
from server.middleware import complete_methods, page_policy, route_methods

ISS = "http://127.0.0.1:8080"


# --- logout tokens -------------------------------------------------------------------------

class _Catcher:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.tokens.append(urllib.parse.parse_qs(body)["logout_token"][0])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bc"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_notifier_signs_with_the_algorithm_alg_of_names(ring: Any) -> None:
    catcher = _Catcher()
    algs = {"portal": "RS256", "payments-web": "ES256", "docs": "EdDSA"}
    notifier = BackchannelNotifier(ring, ISS, alg_of=algs.__getitem__)
    try:
        notifier.notify([LogoutTarget(cid, catcher.url, f"sid-{cid}", "u-bob") for cid in algs])
        assert notifier.drain(5)
    finally:
        notifier.close(timeout=0)
        catcher.close()
    keys = KeySet.import_key_set(ring.jwks())
    seen = {}
    for token in catcher.tokens:
        decoded = jwt.decode(token, keys, algorithms=list(algs.values()))
        seen[decoded.claims["aud"]] = decoded.header["alg"]
        assert decoded.header["typ"] == "logout+jwt"
    assert seen == algs


def test_without_alg_of_logout_tokens_stay_rs256(ring: Any) -> None:
    keys = KeySet.import_key_set(ring.jwks())
    token = mint_logout_token(ring, issuer=ISS, audience="portal", sid="s", now=1_800_000_000, jti="j")
    assert jwt.decode(token, keys, algorithms=["RS256"]).header["alg"] == "RS256"
    token = mint_logout_token(ring, issuer=ISS, audience="portal", sid="s", now=1_800_000_000, jti="j",
                              alg="ES256")
    assert jwt.decode(token, keys, algorithms=["ES256"]).header["alg"] == "ES256"


# --- the page's Content-Security-Policy ------------------------------------------------------

@pytest.mark.parametrize(("given", "sent"), [
    (None, "frame-ancestors 'none'"),
    ("", "frame-ancestors 'none'"),
    ("default-src 'self'; base-uri 'none'", "default-src 'self'; base-uri 'none'; frame-ancestors 'none'"),
    ("default-src 'self'; frame-ancestors 'none'; object-src 'none'",
     "default-src 'self'; frame-ancestors 'none'; object-src 'none'"),
    ("script-src 'nonce-x';", "script-src 'nonce-x'; frame-ancestors 'none'"),
])
def test_frame_ancestors_is_merged_into_the_pages_policy(given: str | None, sent: str) -> None:
    assert page_policy(given) == sent


@pytest.mark.parametrize(("sends_to", "sources"), [
    (None, "'self'"),
    ("http://127.0.0.1:9001/callback?x=1", "'self' http://127.0.0.1:9001"),
    ("https://App.Example.com/cb", "'self' https://app.example.com"),
    ("http://[::1]:8000/cb", "'self' http://[::1]:8000"),
    ("com.example.app:/oauth2redirect", "'self' com.example.app:"),
    # never written into the header: a name CSP cannot carry, or one that would end the directive
    ("http://user@evil.example/cb", None),
    ("http://a.example;script-src */cb", None),
    ("http://a.example b.example/cb", None),
    ("not a uri", None),
])
def test_form_action_names_the_redirect_uris_origin_or_nothing(sends_to: str | None,
                                                               sources: str | None) -> None:
    assert form_action(sends_to) == sources


# --- HEAD and OPTIONS ------------------------------------------------------------------------

class _GetOnly:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


class _PostOnly:
    def on_post(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        resp.media = params


def test_complete_methods_adds_head_and_a_truthful_options() -> None:
    app = falcon.App()
    app.add_route("/get", complete_methods(_GetOnly()))
    app.add_route("/post/{sub}", complete_methods(_PostOnly()))
    client = falcon.testing.TestClient(app)
    get, head = client.simulate_get("/get"), client.simulate_head("/get")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert client.simulate_options("/get").headers["allow"] == "GET, HEAD, OPTIONS"
    assert client.simulate_post("/get").headers["allow"] == "GET, HEAD, OPTIONS"
    assert client.simulate_options("/post/u").headers["allow"] == "OPTIONS, POST"
    assert client.simulate_get("/post/u").headers["allow"] == "OPTIONS, POST"
    assert client.simulate_head("/post/u").status_code == 405
    assert route_methods(_PostOnly()) == ["POST"]


# --- prompt=select_account -----------------------------------------------------------------

def test_select_account_asks_for_the_sign_in_page() -> None:
    request = AuthRequest.from_params("portal", {"prompt": "select_account"})
    assert {"select_account", "login"} <= request.prompt and not request.silent
    assert "login" not in AuthRequest.from_params("portal", {"prompt": "consent"}).prompt
    with pytest.raises(InvalidRequest):
        AuthRequest.from_params("portal", {"prompt": "none select_account"})


# --- discovery ----------------------------------------------------------------------------------

def test_discovery_advertises_what_is_served(demo: Tenant) -> None:
    doc = discovery_document(demo)
    assert "implicit" in doc["grant_types_supported"]
    assert "select_account" in doc["prompt_values_supported"]
    assert "none" in doc["introspection_endpoint_auth_methods_supported"]
    requestable = {"openid", *(s for c in demo.clients.values() for s in c.scopes)}
    assert set(doc["scopes_supported"]) == requestable
    assert not {"address", "phone"} & set(doc["scopes_supported"])
