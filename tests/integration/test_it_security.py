"""Attacks a provider must withstand (RFC 9700), tried over real HTTP."""

from __future__ import annotations

import random

import pytest
import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP, forms_of, page_kind, pkce_pair


def code_for(browser: BrowserAgent, client_id: str = "portal", **params: str) -> str:
    cb = browser.sign_in(client_id, scope="openid profile offline_access", **params)
    assert cb.error is None, cb.params
    return cb.params["code"]


def userinfo(op: LiveOP, access_token: str) -> requests.Response:
    return requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def test_code_reuse_fails_and_revokes_what_the_first_redemption_issued(op: LiveOP,
                                                                       browser: BrowserAgent) -> None:
    code = code_for(browser)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECTS["portal"]}
    first = op.token("portal", **form)
    assert first.status_code == 200
    tokens = first.json()
    assert userinfo(op, tokens["access_token"]).status_code == 200

    second = op.token("portal", **form)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"

    revoked = userinfo(op, tokens["access_token"])
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    intro = op.post_as("portal", "/introspect", token=tokens["access_token"]).json()
    assert intro == {"active": False}
    refresh = op.token("portal", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("respell", ["{}=", "{}==", "{} ", "{}\n", "x{}"],
                         ids=["pad", "pad2", "space", "nl", "x"])
def test_a_redeemed_code_cannot_be_redeemed_again_spelled_differently(op: LiveOP, browser: BrowserAgent,
                                                                      respell: str) -> None:
    code = code_for(browser)
    form = {"grant_type": "authorization_code", "redirect_uri": REDIRECTS["portal"]}
    first = op.token("portal", code=code, **form)
    assert first.status_code == 200
    again = op.token("portal", code=respell.format(code), **form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("verifier", "why"), [
    (None, "missing"), ("wrong-" + "v" * 50, "wrong"),
], ids=["verifier_missing", "verifier_wrong"])
def test_pkce_verifier_missing_or_wrong(op: LiveOP, browser: BrowserAgent, verifier: str | None,
                                        why: str) -> None:
    right, challenge = pkce_pair()
    code = code_for(browser, code_challenge=challenge, code_challenge_method="S256")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECTS["portal"]}
    if verifier:
        form["code_verifier"] = verifier
    resp = op.token("portal", **form)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", why
    # a refused attempt does not spend the code (as node-oidc-provider): the right verifier still redeems it
    assert op.token("portal", **{**form, "code_verifier": right}).status_code == 200


def test_pkce_downgrade_verifier_without_challenge(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    resp = op.token("portal", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"],
                    code_verifier="v" * 50)
    assert resp.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("extra", [{}, {"code_challenge_method": "S256", "code_challenge": ""},
                                   {"code_challenge": "x" * 43, "code_challenge_method": "plain"}],
                         ids=["no_challenge", "empty_challenge", "plain"])
def test_public_client_without_s256_pkce_is_refused(op: LiveOP, browser: BrowserAgent, extra: dict) -> None:
    resp = browser.authorize_request("spa", **extra)
    cb = browser.follow(resp)
    assert cb.error == "invalid_request"
    assert cb.url.startswith(REDIRECTS["spa"])


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example/callback", "http://127.0.0.1:9001/callback/", "http://127.0.0.1:9001/callback?x=1",
    "http://127.0.0.1:9002/callback", "",
], ids=["other_host", "trailing_slash", "added_query", "another_clients_uri", "missing"])
def test_redirect_uri_mismatch_at_authorize_is_shown_never_redirected(op: LiveOP, browser: BrowserAgent,
                                                                      redirect_uri: str) -> None:
    resp = browser.authorize_request("portal", redirect_uri=redirect_uri or None)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "text/html" in resp.headers["Content-Type"]
    assert "redirect_uri" in resp.text
    assert "evil.example" not in resp.text.split("<body>")[0]


def test_unknown_client_is_shown_never_redirected(op: LiveOP, browser: BrowserAgent) -> None:
    resp = browser.get("/authorize", client_id="<script>alert(1)</script>",
                       redirect_uri="https://evil.example/cb", response_type="code", scope="openid")
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "<script>alert(1)</script>" not in resp.text  # auto-escaped


def test_redirect_uri_mismatch_at_token(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    resp = op.token("portal", grant_type="authorization_code", code=code,
                    redirect_uri="http://127.0.0.1:9001/other")
    assert resp.json()["error"] == "invalid_grant"
    assert op.token("portal", grant_type="authorization_code", code=code,
                    redirect_uri=REDIRECTS["portal"]).status_code == 200
    missing = op.token("portal", grant_type="authorization_code", code=code_for(BrowserAgent(op)))
    assert missing.json()["error"] == "invalid_grant"


def test_code_issued_to_another_client(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    resp = op.token("docs", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"])
    assert resp.json()["error"] == "invalid_grant"
    # another client cannot use the code up: its own client still redeems it
    assert op.token("portal", grant_type="authorization_code", code=code,
                    redirect_uri=REDIRECTS["portal"]).status_code == 200


@pytest.mark.parametrize("uri", [
    "https://evil.example/", "http://127.0.0.1:9001/signed-out/", "http://127.0.0.1:9002/signed-out",
], ids=["other_host", "trailing_slash", "another_clients_uri"])
def test_open_redirect_at_logout_is_refused(op: LiveOP, browser: BrowserAgent, uri: str) -> None:
    browser.sign_in("portal")
    for params in ({"client_id": "portal"}, {}):
        resp = browser.get("/logout", post_logout_redirect_uri=uri, **params)
        assert resp.status_code == 400 and "Location" not in resp.headers
    assert browser.silent("portal").error is None  # the session was not ended


@pytest.mark.parametrize("csrf", [None, "", "forged-token"], ids=["missing", "empty", "wrong"])
def test_login_form_csrf(op: LiveOP, browser: BrowserAgent, csrf: str | None) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    form = forms_of(page.text)[0]
    data = {**form.fields, "username": "alice", "password": "wonderland"}
    if csrf is None:
        del data["csrf_token"]
    else:
        data["csrf_token"] = csrf
    resp = browser.http.post(op.url + form.action, data=data, allow_redirects=False, timeout=10)
    assert resp.status_code == 403
    assert browser.session_cookie is None


def test_login_form_csrf_token_of_another_interaction(op: LiveOP, browser: BrowserAgent) -> None:
    attacker = BrowserAgent(op)
    attacker_form = forms_of(attacker.follow(attacker.authorize_request("portal")).text)[0]
    page = browser.follow(browser.authorize_request("portal"))
    form = forms_of(page.text)[0]
    data = {**form.fields, "csrf_token": attacker_form.fields["csrf_token"], "username": "alice",
            "password": "wonderland"}
    resp = browser.http.post(op.url + form.action, data=data, allow_redirects=False, timeout=10)
    assert resp.status_code == 403


def test_consent_form_csrf(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    page = browser.follow(browser.submit(page, {"username": "alice", "password": "wonderland"}))
    assert page_kind(page) == "consent"
    resp = browser.submit(page, {"csrf_token": "nope"}, ("decision", "allow"))
    assert resp.status_code == 403


def test_wrong_password_reshows_the_form(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    for username in ("alice", "mallory"):
        resp = browser.submit(page, {"username": username, "password": "guess"})
        assert resp.status_code == 200 and "Location" not in resp.headers
        assert page_kind(resp) == "login" and "Wrong username or password" in resp.text
        assert browser.session_cookie is None


def test_login_attempts_are_rate_limited(op: LiveOP, browser: BrowserAgent) -> None:
    # the guessing throttle's first tier for one account at one address (tests/integration/test_it_hostile.py
    # has the rest: other addresses, one-time codes, the backend API)
    allowed = op.tenant.settings.guessing.per_account_address[0].requests
    page = browser.follow(browser.authorize_request("portal"))
    statuses = [browser.submit(page, {"username": "carol", "password": "x"}).status_code
                for _ in range(allowed + 2)]
    assert statuses[:allowed] == [200] * allowed and statuses[allowed:] == [429, 429]


def test_session_fixation_a_planted_id_is_replaced(op: LiveOP, browser: BrowserAgent) -> None:
    browser.http.cookies.set("psso_session", "planted-by-attacker", domain="127.0.0.1", path="/")
    browser.sign_in("portal")
    assert browser.session_cookie not in (None, "planted-by-attacker")


def test_signing_in_again_moves_the_session_to_a_new_id(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    old = browser.session_cookie
    assert browser.sign_in("portal", prompt="login").error is None
    assert browser.session_cookie not in (None, old)
    thief = BrowserAgent(op)
    thief.http.cookies.set("psso_session", old, domain="127.0.0.1", path="/")
    assert thief.silent("portal").codes == ["no_session"]
    assert browser.silent("portal").error is None  # the consent moved with the session


def test_old_session_id_dies_after_the_second_factor(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    old = browser.session_cookie
    assert browser.sign_in("payments-web").error is None
    assert browser.session_cookie != old
    thief = BrowserAgent(op)
    thief.http.cookies.set("psso_session", old, domain="127.0.0.1", path="/")
    assert thief.silent("portal").error == "login_required"


def test_totp_code_works_once(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("payments-web"))
    page = browser.follow(browser.submit(page, {"username": "alice", "password": "wonderland"}))
    assert page_kind(page) == "otp"
    wrong = browser.submit(page, {"otp": "000000" if op.totp() != "000000" else "111111"})
    assert wrong.status_code == 200 and page_kind(wrong) == "otp"
    code = op.totp()
    assert page_kind(browser.follow(browser.submit(page, {"otp": code}))) == "consent"
    other = BrowserAgent(op)
    page = other.follow(other.authorize_request("payments-web"))
    page = other.follow(other.submit(page, {"username": "alice", "password": "wonderland"}))
    replay = other.submit(page, {"otp": code})
    assert replay.status_code == 200 and "already used" in replay.text


def test_refresh_token_reuse_revokes_the_family(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    tokens = op.token("portal", grant_type="authorization_code", code=code,
                      redirect_uri=REDIRECTS["portal"]).json()
    first = tokens["refresh_token"]
    rotated = op.token("portal", grant_type="refresh_token", refresh_token=first).json()
    second = rotated["refresh_token"]
    reuse = op.token("portal", grant_type="refresh_token", refresh_token=first)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = op.token("portal", grant_type="refresh_token", refresh_token=second)
    assert after.json()["error"] == "invalid_grant"  # the legitimate holder is cut off too


def test_refresh_token_of_another_client(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = op.token("portal", grant_type="authorization_code", code=code_for(browser),
                      redirect_uri=REDIRECTS["portal"]).json()
    resp = op.token("docs", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert resp.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_wrong_client_secret(op: LiveOP, browser: BrowserAgent, auth: str) -> None:
    code = code_for(browser)
    resp = op.token("portal", auth=auth, secret="not-the-secret", grant_type="authorization_code",
                    code=code, redirect_uri=REDIRECTS["portal"])
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    if auth == "basic":
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    # the failed attempt did not spend the code
    ok = op.token("portal", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"])
    assert ok.status_code == 200


def test_confidential_client_cannot_skip_authentication(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    resp = op.token("portal", auth="none", grant_type="authorization_code", code=code,
                    redirect_uri=REDIRECTS["portal"])
    assert resp.status_code == 401


def test_userinfo_bearer_errors(op: LiveOP) -> None:
    none = requests.get(f"{op.url}/userinfo", timeout=10)
    assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
    garbage = userinfo(op, "not-a-token")
    assert garbage.status_code == 401 and 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    in_query = requests.get(f"{op.url}/userinfo", params={"access_token": "x"}, timeout=10)
    assert in_query.status_code == 401  # RFC 9700 §2.4: never from the query string


def test_tokens_are_not_accepted_after_expiry(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = op.token("portal", grant_type="authorization_code", code=code_for(browser),
                      redirect_uri=REDIRECTS["portal"]).json()
    op.clock.advance(601)
    assert userinfo(op, tokens["access_token"]).status_code == 401


def test_expired_code(op: LiveOP, browser: BrowserAgent) -> None:
    code = code_for(browser)
    op.clock.advance(61)
    resp = op.token("portal", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"])
    assert resp.json()["error"] == "invalid_grant"


def test_garbage_never_yields_a_server_error(op: LiveOP) -> None:
    rng = random.Random(4)
    alphabet = "abc=&%;/?#\x00\xff\u2028'\"<>{}[]" + "".join(chr(i) for i in range(32, 127))
    paths = ["/authorize", "/token", "/userinfo", "/logout", "/login", "/consent", "/revoke", "/introspect",
             "/jwks", "/.well-known/openid-configuration", "/nope"]
    for _ in range(150):
        path = rng.choice(paths)
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        method = rng.choice(["GET", "POST", "PUT", "DELETE"])
        header_junk = junk.encode("latin-1", "replace").decode("latin-1").replace("\x00", "")
        headers = {"Content-Type": rng.choice(["application/x-www-form-urlencoded", "application/json",
                                               "text/plain"]),
                   "Authorization": rng.choice(["", "Basic " + header_junk, "Bearer " + header_junk,
                                                header_junk]).strip()}
        resp = requests.request(method, f"{op.url}{path}?{junk}", data=junk.encode("utf-8", "replace"),
                                headers=headers, timeout=10, allow_redirects=False)
        assert resp.status_code < 500, (method, path, junk, resp.text)
        assert "Traceback" not in resp.text
        if "application/json" in resp.headers.get("Content-Type", "") and resp.status_code >= 400:
            body = resp.json()
            assert "error" in body and "error_description" in body
