"""A conformance probe's findings, each checked over HTTP against a live provider on loopback.

Logout tokens signed with the client's ID token algorithm, CORS for DPoP and
/par, discovery that says what is served, HEAD wherever GET, truthful
``Allow``, ``request_uri`` that is not a pushed one, ``prompt=select_account``,
RFC 8414 metadata, and the hosted pages' own Content-Security-Policy.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import replace

import pytest
import requests
from backend_support import LogoutReceiver
from joserfc import jwt
from joserfc.jwk import KeySet
from live_op import REDIRECTS, BrowserAgent, LiveOP, page_kind, with_issuer

from policy_sso.tenant import Tenant

LISTENING = ("portal", "payments-web", "docs")  # RS256, ES256 and EdDSA ID tokens in the demo


@pytest.fixture
def tenant_for(demo_tenant: Tenant, receiver: LogoutReceiver) -> Callable[[str], Tenant]:
    """The demo tenant whose portal, payments-web and docs take back-channel logouts at the receiver."""
    clients = {cid: replace(c, backchannel_logout_uri=receiver.url) if cid in LISTENING else c
               for cid, c in demo_tenant.clients.items()}
    return lambda url: with_issuer(replace(demo_tenant, clients=clients), url)


def raw(op: LiveOP, method: str, target: str,
        headers: dict[str, str] | None = None) -> tuple[str, dict, bytes]:
    """Send one request on a connection of its own; return the status line, headers and bytes after them."""
    host, port = urllib.parse.urlsplit(op.url).netloc.split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    parsed = {}
    for field in fields:
        name, _, value = field.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return status, parsed, body


# --- 1. logout tokens are signed like the client's ID tokens ------------------------------------

def test_logout_tokens_use_each_clients_id_token_algorithm(op: LiveOP, browser: BrowserAgent,
                                                             receiver: LogoutReceiver) -> None:
    hints = {}
    for client_id in LISTENING:
        cb = browser.sign_in(client_id)
        assert cb.error is None, cb.params
        hints[client_id] = op.exchange(client_id, cb.params["code"])["id_token"]
    keys = KeySet.import_key_set(requests.get(f"{op.url}/jwks", timeout=10).json())
    algs = {cid: jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"]).header["alg"]
            for cid, token in hints.items()}
    assert algs == {"portal": "RS256", "payments-web": "ES256", "docs": "EdDSA"}

    resp = browser.get("/logout", id_token_hint=hints["portal"])
    assert resp.status_code in (200, 302), resp.text[:300]
    tokens = receiver.wait_for(3)
    assert len(tokens) == 3
    for token in tokens:
        # the RP validates it as an ID token (Back-Channel Logout §2.6): only its registered algorithm
        aud = jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"]).claims["aud"]
        decoded = jwt.decode(token, keys, algorithms=[algs[aud]])
        assert decoded.header["typ"] == "logout+jwt"
        assert decoded.header["alg"] == algs[aud]
        assert decoded.claims["iss"] == op.url and decoded.claims["sid"]


# --- 2 and 5. CORS and Allow --------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, dpop"}


@pytest.mark.parametrize(("path", "methods"), [
    ("/token", "OPTIONS, POST"), ("/par", "OPTIONS, POST"), ("/revoke", "OPTIONS, POST"),
    ("/introspect", "OPTIONS, POST"), ("/userinfo", "GET, HEAD, OPTIONS, POST"),
    ("/jwks", "GET, HEAD, OPTIONS"), ("/.well-known/openid-configuration", "GET, HEAD, OPTIONS"),
])
def test_a_preflight_allows_dpop_and_names_the_routes_real_methods(op: LiveOP, path: str,
                                                                   methods: str) -> None:
    resp = requests.options(f"{op.url}{path}", headers=PREFLIGHT, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, DPoP"
    assert resp.headers["Allow"] == methods
    assert resp.headers["Access-Control-Allow-Methods"] == methods
    assert resp.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce, WWW-Authenticate"


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect", "/par"])
def test_a_405_and_the_preflight_agree(op: LiveOP, path: str) -> None:
    refused = requests.get(f"{op.url}{path}", timeout=10)
    assert refused.status_code == 405
    options = requests.options(f"{op.url}{path}", timeout=10)
    assert refused.headers["Allow"] == options.headers["Allow"] == "OPTIONS, POST"
    assert "GET" not in options.headers["Access-Control-Allow-Methods"]


def test_cors_responses_expose_the_dpop_nonce_and_the_challenge(op: LiveOP) -> None:
    denied = requests.get(f"{op.url}/userinfo", headers={"Origin": "https://app.example"}, timeout=10)
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"]
    assert denied.headers["Access-Control-Allow-Origin"] == "*"
    assert denied.headers["Access-Control-Expose-Headers"] == "DPoP-Nonce, WWW-Authenticate"
    pushed = requests.post(f"{op.url}/par", data={"client_id": "spa"}, headers={"Origin": "https://app.example"},
                           timeout=10)
    assert pushed.status_code == 400  # no redirect_uri: refused, and the browser app may read why
    assert pushed.headers["Access-Control-Allow-Origin"] == "*"
    assert "DPoP-Nonce" in pushed.headers["Access-Control-Expose-Headers"]


def test_a_public_client_pushes_from_the_browser(op: LiveOP) -> None:
    resp = requests.post(f"{op.url}/par", headers={"Origin": "https://app.example"}, timeout=10, data={
        "client_id": "spa", "response_type": "code", "scope": "openid", "redirect_uri": REDIRECTS["spa"],
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.json()["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")


def test_pages_stay_out_of_cors(op: LiveOP) -> None:
    resp = requests.options(f"{op.url}/login", headers=PREFLIGHT, timeout=10)
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert resp.headers["Allow"] == "GET, HEAD, OPTIONS, POST"


# --- 3 and 9. discovery says what is served ------------------------------------------------------

def test_discovery_lists_what_is_served(op: LiveOP) -> None:
    doc = requests.get(f"{op.url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["grant_types_supported"] == ["authorization_code", "implicit", "refresh_token",
                                            "client_credentials"]
    assert {"id_token", "id_token token"} <= set(doc["response_types_supported"])
    assert doc["prompt_values_supported"] == ["none", "login", "consent", "select_account"]
    introspection = doc["introspection_endpoint_auth_methods_supported"]
    assert introspection == doc["token_endpoint_auth_methods_supported"]
    assert "none" in doc["introspection_endpoint_auth_methods_supported"]
    requestable = {scope for client in op.tenant.clients.values() for scope in client.scopes}
    assert doc["scopes_supported"][0] == "openid"
    assert set(doc["scopes_supported"]) == requestable | {"openid"}
    assert "address" not in doc["scopes_supported"] and "phone" not in doc["scopes_supported"]
    assert doc["request_uri_parameter_supported"] is False


def test_implicit_as_advertised(op: LiveOP, browser: BrowserAgent) -> None:
    cb = browser.sign_in("portal", response_type="id_token", response_mode="fragment")
    assert cb.error is None and "id_token" in cb.params


def test_a_public_client_introspects_by_its_client_id_as_advertised(op: LiveOP) -> None:
    url = f"{op.url}/introspect"
    resp = requests.post(url, data={"client_id": "spa", "token": "not-a-token"}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"active": False}
    confidential = requests.post(url, data={"client_id": "portal", "token": "x"}, timeout=10)
    assert confidential.status_code == 401 and confidential.json()["error"] == "invalid_client"


def test_a_scope_not_listed_is_ignored(op: LiveOP, browser: BrowserAgent) -> None:
    # no client may ask for address: not understood here, so ignored (OIDC Core §3.1.2.1), not refused
    assert "address" not in requests.get(f"{op.url}/.well-known/openid-configuration",
                                         timeout=10).json()["scopes_supported"]
    cb = browser.sign_in("portal", scope="openid address")
    assert cb.error is None and op.exchange("portal", cb.params["code"])["scope"] == "openid"


# --- 4. HEAD wherever GET -------------------------------------------------------------------

@pytest.mark.parametrize("target", ["/jwks", "/.well-known/openid-configuration",
                                    "/.well-known/oauth-authorization-server", "/healthz", "/readyz",
                                    "/openapi.json", "/userinfo", "/login", "/logout",
                                    "/authorize?client_id=portal"])  # /metrics: its counters move between two

def test_head_answers_as_get_without_a_body(op: LiveOP, target: str) -> None:
    get_status, get_headers, get_body = raw(op, "GET", target)
    status, headers, body = raw(op, "HEAD", target)
    assert status == get_status, (target, status, get_status)
    assert not status.endswith("405 Method Not Allowed")
    assert body == b""
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    assert headers.get("content-type") == get_headers.get("content-type")
    for name in ("cache-control", "www-authenticate", "content-security-policy",
                 "access-control-allow-origin"):
        assert (name in headers) == (name in get_headers), name


def test_head_of_an_authorization_request_redirects_as_get(op: LiveOP) -> None:
    query = urllib.parse.urlencode({"client_id": "portal", "redirect_uri": REDIRECTS["portal"],
                                    "response_type": "code", "scope": "openid", "state": "h"})
    status, headers, body = raw(op, "HEAD", f"/authorize?{query}")
    assert status.startswith("HTTP/1.1 302") and headers["location"].startswith("/login?interaction=")
    assert body == b""


def test_head_of_userinfo_with_a_token(op: LiveOP, browser: BrowserAgent) -> None:
    token = op.exchange("portal", browser.sign_in("portal").params["code"])["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    get_status, _, get_body = raw(op, "GET", "/userinfo", auth)
    status, headers, body = raw(op, "HEAD", "/userinfo", auth)
    assert status == get_status and status.startswith("HTTP/1.1 200")
    assert body == b"" and headers["content-length"] == str(len(get_body))


@pytest.mark.parametrize(("path", "allow"), [("/jwks", "GET, HEAD, OPTIONS"),
                                             ("/healthz", "GET, HEAD, OPTIONS"),
                                             ("/authorize", "GET, HEAD, OPTIONS, POST")])
def test_allow_lists_head_where_get_is(op: LiveOP, path: str, allow: str) -> None:
    refused = requests.delete(f"{op.url}{path}", timeout=10)
    assert refused.status_code == 405 and refused.headers["Allow"] == allow
    assert requests.options(f"{op.url}{path}", timeout=10).headers["Allow"] == allow


# --- 6. request_uri that was not pushed ----------------------------------------------------------

def test_an_external_request_uri_is_not_supported(op: LiveOP, browser: BrowserAgent) -> None:
    cb = browser.follow(browser.authorize_request("portal", request_uri="https://rp.example/req.jwt"))
    assert not isinstance(cb, requests.Response), cb.text[:300]
    assert cb.error == "request_uri_not_supported" and cb.params["state"] == "xyz"


def test_a_pushed_request_uri_keeps_its_own_error(op: LiveOP, browser: BrowserAgent) -> None:
    forged = "urn:ietf:params:oauth:request_uri:forged"
    resp = browser.get("/authorize", client_id="portal", request_uri=forged)
    assert resp.status_code == 400 and "invalid_request_uri" in resp.text


# --- 7. prompt=select_account ---------------------------------------------------------------------

def test_select_account_shows_the_sign_in_page_and_another_user_may_sign_in(op: LiveOP,
                                                                           browser: BrowserAgent) -> None:
    first = op.exchange("portal", browser.sign_in("portal", "alice").params["code"])
    assert op.verify_id_token(first["id_token"], "portal", "n-0S6")["sub"] == "u-alice"
    assert browser.silent("portal").error is None  # signed in: single sign-on would answer at once

    page = browser.follow(browser.authorize_request("portal", prompt="select_account"))
    assert isinstance(page, requests.Response) and page_kind(page) == "login"
    cb = browser.interact(page, "bob")
    assert cb.error is None, cb.params
    second = op.exchange("portal", cb.params["code"])
    assert op.verify_id_token(second["id_token"], "portal", "n-0S6")["sub"] == "u-bob"


def test_select_account_with_none_is_invalid(op: LiveOP, browser: BrowserAgent) -> None:
    cb = browser.follow(browser.authorize_request("portal", prompt="none select_account"))
    assert cb.error == "invalid_request"


# --- 8. RFC 8414 metadata --------------------------------------------------------------------

def test_authorization_server_metadata_is_the_discovery_document(op: LiveOP) -> None:
    oidc = requests.get(f"{op.url}/.well-known/openid-configuration", timeout=10)
    oauth = requests.get(f"{op.url}/.well-known/oauth-authorization-server", timeout=10)
    assert oauth.status_code == 200 and oauth.headers["Content-Type"].startswith("application/json")
    assert oauth.json() == oidc.json()
    assert oauth.json()["issuer"] == op.url  # RFC 8414 §3.3: identical to the issuer it was asked for
    assert oauth.headers["Access-Control-Allow-Origin"] == "*"


# --- 10. the hosted pages keep their own Content-Security-Policy ----------------------------------

def directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


def test_the_login_page_keeps_its_strict_policy(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    assert isinstance(page, requests.Response) and page_kind(page) == "login"
    policy = page.headers["Content-Security-Policy"]
    found = directives(policy)
    assert found["script-src"].startswith("script-src 'nonce-")
    assert found["base-uri"] == "base-uri 'none'" and found["object-src"] == "object-src 'none'"
    assert found["frame-ancestors"] == "frame-ancestors 'none'"
    assert policy.count("frame-ancestors") == 1
    nonce = found["script-src"].split("'nonce-")[1].rstrip("'")
    assert f'nonce="{nonce}"' in page.text  # the page's own script runs under that policy
    assert page.headers["X-Frame-Options"] == "DENY"


def test_a_sign_in_page_sends_forms_only_here_and_to_its_apps_redirect_origin(
        op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    assert isinstance(page, requests.Response) and page_kind(page) == "login"
    # the form posts here; its answer redirects to the app (CSP3 form-action covers both)
    assert directives(page.headers["Content-Security-Policy"])["form-action"] == \
        "form-action 'self' http://127.0.0.1:9001"
    other = browser.follow(browser.authorize_request("payments-web"))
    assert isinstance(other, requests.Response)
    assert directives(other.headers["Content-Security-Policy"])["form-action"] == \
        "form-action 'self' http://127.0.0.1:9002"


def test_the_logout_confirmation_names_the_post_logout_origin_and_the_account_page_none(
        op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    confirm = browser.get("/logout", client_id="portal",
                          post_logout_redirect_uri="http://127.0.0.1:9001/signed-out")
    assert page_kind(confirm) == "logout"
    assert directives(confirm.headers["Content-Security-Policy"])["form-action"] == \
        "form-action 'self' http://127.0.0.1:9001"
    bare = browser.get("/logout")
    assert directives(bare.headers["Content-Security-Policy"])["form-action"] == "form-action 'self'"
    account = browser.get("/account")
    assert directives(account.headers["Content-Security-Policy"])["form-action"] == "form-action 'self'"


def test_every_html_answer_forbids_framing(op: LiveOP) -> None:
    resp = requests.get(f"{op.url}/login", timeout=10)  # no interaction: an error page
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


# --- scope values no client may ask for are ignored (OIDC Core §3.1.2.1) ---------------------------

def test_a_scope_nobody_knows_is_ignored_and_one_of_another_client_is_refused(op: LiveOP,
                                                                             browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    unknown = browser.silent("portal", scope="openid profile no-such-scope")
    assert unknown.error is None and unknown.params.get("code")
    tokens = op.exchange("portal", unknown.params["code"])
    assert tokens["scope"].split() == ["openid", "profile"]
    theirs = browser.silent("portal", scope="openid payments:write")  # payments' scope, not portal's
    assert theirs.error == "invalid_scope"


# --- a repeated parameter goes to the verified redirect_uri (RFC 6749 §3.1, §4.1.2.1) ------------

def test_a_repeated_parameter_is_redirected_once_the_client_is_verified(op: LiveOP) -> None:
    query = ("client_id=portal&redirect_uri=http%3A%2F%2F127.0.0.1%3A9001%2Fcallback&response_type=code"
             "&scope=openid&state=s1&nonce=a&nonce=b")
    resp = requests.get(f"{op.url}/authorize?{query}", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    location = urllib.parse.urlsplit(resp.headers["Location"])
    params = dict(urllib.parse.parse_qsl(location.query))
    assert location.path == "/callback" and params["error"] == "invalid_request"
    assert params["state"] == "s1" and "nonce" in params["error_description"]
    shown = requests.get(f"{op.url}/authorize?client_id=portal&client_id=docs", timeout=10)
    assert shown.status_code == 400 and "Location" not in shown.headers  # which client? not known


def test_a_repeated_parameter_in_a_posted_authorization_request_is_redirected_too(op: LiveOP) -> None:
    body = ("client_id=portal&redirect_uri=http%3A%2F%2F127.0.0.1%3A9001%2Fcallback&response_type=code"
            "&scope=openid&state=s2&prompt=login&prompt=consent")
    resp = requests.post(f"{op.url}/authorize", data=body, allow_redirects=False, timeout=10,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 303
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resp.headers["Location"]).query))
    assert params["error"] == "invalid_request" and params["state"] == "s2"


def test_a_parameter_sent_without_a_value_counts_as_omitted(op: LiveOP, browser: BrowserAgent) -> None:
    """RFC 6749 §3.1 and §3.2: "Parameters sent without a value MUST be treated as if they were omitted"."""
    browser.sign_in("portal")
    for empty in ("response_mode", "request", "request_uri", "registration", "dpop_jkt",
                  "code_challenge_method", "max_age", "acr_values", "login_hint", "claims"):
        answer = browser.silent("portal", **{empty: ""})
        assert answer.error is None and "code" in answer.params, (empty, answer.params)
    implicit = browser.silent("portal", response_type="id_token", code_challenge_method="")
    assert implicit.error is None and "id_token" in implicit.params, implicit.params
    # at the token endpoint: an empty client_secret beside Basic is not a second authentication method
    code = browser.silent("portal").params["code"]
    tokens = op.token("portal", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"],
                      client_secret="", code_verifier="")
    assert tokens.status_code == 200, tokens.text


ERROR_DESCRIPTION = re.compile(r'[\x20\x21\x23-\x5b\x5d-\x7e]*')  # RFC 6749 §4.1.2.1, §5.2


@pytest.mark.parametrize("value", ['é', 'a"b', 'a\\b', "line\nbreak"])
def test_an_error_description_quoting_a_value_keeps_to_the_rfc_characters(op: LiveOP, browser: BrowserAgent,
                                                                          value: str) -> None:
    redirected = browser.follow(browser.authorize_request("portal", response_type=value))
    assert redirected.error == "unsupported_response_type", redirected.params
    assert ERROR_DESCRIPTION.fullmatch(redirected.params["error_description"]), redirected.params
    refused = op.token("portal", grant_type=value)
    assert refused.json()["error"] == "unsupported_grant_type"
    assert ERROR_DESCRIPTION.fullmatch(refused.json()["error_description"]), refused.text
