"""The Falcon app's cross-cutting behaviour: errors, headers, cookies, form handling."""

from __future__ import annotations

import logging
import re
import urllib.parse

import falcon.testing
import pytest

from policy_sso.errors import StoreError
from policy_sso.sessions.model import SessionLifetime

PORTAL = {"client_id": "portal", "redirect_uri": "http://127.0.0.1:9001/callback", "response_type": "code",
          "scope": "openid profile", "state": "st", "nonce": "n"}


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def interaction_cookie(resp: falcon.testing.Result) -> dict[str, str]:
    """Return the cookie of the interaction a response starts: named by its id, as the Location says."""
    interaction_id = urllib.parse.parse_qs(resp.headers["Location"].split("?")[1])["interaction"][0]
    name = f"psso_interaction_{interaction_id}"
    return {name: resp.cookies[name].value}


def start_login(client: falcon.testing.TestClient,
                **extra: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Return (login URL, interaction cookie, hidden fields) for a new interaction."""
    resp = client.simulate_get("/authorize", params={**PORTAL, **extra})
    assert resp.status_code == 302, resp.text
    cookie = interaction_cookie(resp)
    page = client.simulate_get(resp.headers["Location"].split("?")[0],
                               query_string=resp.headers["Location"].split("?")[1], cookies=cookie)
    assert page.status_code == 200
    return resp.headers["Location"], cookie, hidden_fields(page.text)


def post_login(client: falcon.testing.TestClient, location: str, cookie: dict[str, str],
               fields: dict[str, str], **form: str) -> falcon.testing.Result:
    path, query = location.split("?")
    return client.simulate_post(path, query_string=query, cookies=cookie,
                                body=urllib.parse.urlencode({**fields, **form}),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("GET", "/nowhere", 404, "not_found"),
    ("DELETE", "/token", 405, "method_not_allowed"),
    ("GET", "/token", 405, "method_not_allowed"),
    ("POST", "/userinfo", 400, "invalid_request"),
], ids=["unknown_path", "wrong_method", "token_get", "userinfo_post_not_a_form"])
def test_json_errors_have_error_and_description(client: falcon.testing.TestClient, method: str, path: str,
                                                status: int, error: str) -> None:
    resp = client.simulate_request(method, path, headers={"Content-Type": "text/plain"}, body="x")
    assert resp.status_code == status
    assert resp.json["error"] == error and resp.json["error_description"]


def test_token_endpoint_requires_a_form_body(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_post("/token", json={"grant_type": "client_credentials"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"


def test_repeated_parameters_are_refused(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_post("/token", body="grant_type=a&grant_type=b",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400 and "more than once" in resp.json["error_description"]
    page = client.simulate_get("/authorize", query_string="client_id=portal&client_id=docs")
    assert page.status_code == 400 and "text/html" in page.headers["Content-Type"]


def test_authorize_errors_before_redirect_uri_check_are_html_pages(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/authorize", params={**PORTAL, "redirect_uri": "https://evil.example/"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "not registered" in resp.text


def test_redirectable_error_goes_to_the_client(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/authorize", params={**PORTAL, "scope": "openid payments:write"})
    assert resp.status_code == 302
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resp.headers["Location"]).query))
    assert query == {"error": "invalid_scope", "error_description": query["error_description"], "state": "st",
                     "iss": "http://127.0.0.1:8080"}


def test_silent_without_session_and_post_authorize(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_post("/authorize", body=urllib.parse.urlencode({**PORTAL, "prompt": "none"}),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 303  # after a POST, the browser GETs the redirect_uri
    assert "error=login_required" in resp.headers["Location"]
    assert "error_description=no_session" in resp.headers["Location"]


def test_form_post_page_escapes_values(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/authorize", params={**PORTAL, "prompt": "none", "response_mode": "form_post",
                                                     "state": '"><script>x</script>'})
    assert resp.status_code == 200
    assert '<form method="post" action="http://127.0.0.1:9001/callback">' in resp.text
    assert "<script>x</script>" not in resp.text and "&#34;&gt;&lt;script&gt;" in resp.text


@pytest.mark.parametrize(("issuer", "secure"), [("http://127.0.0.1:8080", False),
                                                ("https://sso.example", True)])
def test_cookie_flags(make_client, issuer: str, secure: bool) -> None:
    client = make_client(issuer)
    resp = client.simulate_get("/authorize", params=PORTAL)
    cookie = resp.cookies[next(iter(interaction_cookie(resp)))]
    assert cookie.http_only and cookie.same_site == "Lax" and cookie.secure is secure
    location, value, fields = start_login(client)
    done = post_login(client, location, value, fields, username="bob", password="builder")
    session = done.cookies["psso_session"]
    assert session.http_only and session.same_site == "Lax" and session.secure is secure
    assert session.path == "/"


def test_login_rotates_nothing_on_failure_and_sets_a_session_on_success(client) -> None:
    location, cookie, fields = start_login(client)
    wrong = post_login(client, location, cookie, fields, username="bob", password="nope")
    assert wrong.status_code == 200 and "psso_session" not in wrong.cookies
    assert 'type="password"' in wrong.text and "Wrong username or password" in wrong.text
    ok = post_login(client, location, cookie, fields, username="bob", password="builder")
    assert ok.status_code == 303 and ok.headers["Location"].startswith("/consent?interaction=")
    assert len(ok.cookies["psso_session"].value) >= 43  # 256 random bits, base64url


def test_expired_interaction_is_shown_as_a_page(client, clock) -> None:
    location, cookie, fields = start_login(client)
    clock.now += 3600
    resp = post_login(client, location, cookie, fields, username="bob", password="builder")
    assert resp.status_code == 400 and "text/html" in resp.headers["Content-Type"]
    assert "expired" in resp.text


def test_security_headers(client: falcon.testing.TestClient) -> None:
    resp = client.simulate_get("/healthz")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Request-Id"]
    disc = client.simulate_get("/.well-known/openid-configuration")
    assert disc.headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in disc.headers["Cache-Control"]


class BrokenStore:
    """A store whose every call fails, as when SQLite's disk or Redis is gone."""

    lifetime = SessionLifetime()

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise StoreError("backend unavailable")

        return fail


def test_store_failure_is_503_not_500(make_client, caplog) -> None:
    client = make_client(store=BrokenStore())
    resp = client.simulate_post("/token", body="grant_type=authorization_code&code=c&redirect_uri=x",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Authorization": "Basic cG9ydGFsOnd3dw=="})
    assert resp.status_code in (401, 503)
    page = client.simulate_get("/authorize", params={**PORTAL, "prompt": "none"},
                               cookies={"psso_session": "s"})
    assert page.status_code == 503 and "text/html" in page.headers["Content-Type"]


def test_unexpected_errors_are_logged_without_secrets(make_client, caplog, monkeypatch) -> None:
    from policy_sso.oidc import authorization_flow

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(authorization_flow, "authorize", explode)
    client = make_client()
    with caplog.at_level(logging.ERROR, logger="policy_sso.server"):
        resp = client.simulate_get("/authorize", params={**PORTAL, "id_token_hint": "SECRET-HINT"})
    assert resp.status_code == 400
    assert "Traceback" not in resp.text and "boom" not in resp.text
    assert "unhandled error on GET /authorize" in caplog.text
    assert "SECRET-HINT" not in caplog.text
