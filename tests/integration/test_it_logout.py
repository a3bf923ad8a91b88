"""RP-Initiated Logout 1.0, revocation and introspection over real HTTP."""

from __future__ import annotations

import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP, forms_of, page_kind

SIGNED_OUT = "http://127.0.0.1:9001/signed-out"


def signed_in(op: LiveOP, browser: BrowserAgent, client_id: str = "portal") -> dict:
    cb = browser.sign_in(client_id, scope="openid profile offline_access")
    resp = op.token(client_id, grant_type="authorization_code", code=cb.params["code"],
                    redirect_uri=REDIRECTS[client_id])
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_without_id_token_hint_the_user_confirms(op: LiveOP, browser: BrowserAgent) -> None:
    signed_in(op, browser)
    page = browser.get("/logout", client_id="portal", post_logout_redirect_uri=SIGNED_OUT, state="s1")
    assert page.status_code == 200 and page_kind(page) == "logout"
    assert forms_of(page.text)[0].method == "post"
    assert browser.silent("portal").error is None  # nothing ended yet

    done = browser.submit(page, {}, ("logout", "yes"))
    assert done.status_code == 303
    assert done.headers["Location"] == f"{SIGNED_OUT}?state=s1"
    assert browser.session_cookie is None
    assert browser.silent("portal").codes == ["no_session"]


def test_confirmation_needs_the_pages_csrf_token(op: LiveOP, browser: BrowserAgent) -> None:
    signed_in(op, browser)
    forged = browser.http.post(f"{op.url}/logout", data={"logout": "yes", "csrf_token": "x"},
                               allow_redirects=False, timeout=10)
    assert forged.status_code == 403
    assert browser.silent("portal").error is None


def test_valid_hint_ends_the_session_at_once(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = signed_in(op, browser)
    resp = browser.get("/logout", id_token_hint=tokens["id_token"], post_logout_redirect_uri=SIGNED_OUT)
    assert resp.status_code == 302 and resp.headers["Location"] == SIGNED_OUT
    assert browser.silent("portal").codes == ["no_session"]


def test_a_cross_site_post_is_sent_again_from_here_with_the_browsers_cookie(
        op: LiveOP, browser: BrowserAgent) -> None:
    tokens = signed_in(op, browser)
    # the relying party's page form-posts to /logout: SameSite=Lax keeps the cookie back
    cross_site = requests.post(f"{op.url}/logout", timeout=10, allow_redirects=False, data={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": SIGNED_OUT, "state": "s9"})
    assert cross_site.status_code == 200 and browser.silent("portal").error is None  # nothing ended yet
    (again,) = forms_of(cross_site.text)  # a page that submits itself, from this origin
    assert again.action == "/logout" and again.fields["id_token_hint"] == tokens["id_token"]
    resent = browser.http.post(f"{op.url}/logout", data=again.fields, allow_redirects=False, timeout=10)
    assert resent.status_code == 303 and resent.headers["Location"] == f"{SIGNED_OUT}?state=s9"
    assert browser.silent("portal").codes == ["no_session"]


def test_a_leaked_id_token_posted_from_elsewhere_ends_nothing(op: LiveOP, browser: BrowserAgent) -> None:
    # a cookie-less POST used to end the session its sid named: a leaked ID token was a remote sign-out
    tokens = signed_in(op, browser)
    first = requests.post(f"{op.url}/logout", data={"id_token_hint": tokens["id_token"]}, timeout=10)
    (again,) = forms_of(first.text)
    resent = requests.post(f"{op.url}/logout", data=again.fields, allow_redirects=False, timeout=10)
    assert resent.status_code == 200 and "signed out" in resent.text  # this client had no session
    assert browser.silent("portal").error is None  # alice's, elsewhere, goes on


def test_a_hint_for_another_user_ends_nothing_of_theirs_and_asks_this_browsers_user(
        op: LiveOP, browser: BrowserAgent, new_browser) -> None:
    # bob's browser sent alice's ID token: her session, elsewhere, must not end without her (§2, §6)
    alices = signed_in(op, browser)
    bob = new_browser()
    bob.sign_in("portal", "bob")
    page = bob.get("/logout", id_token_hint=alices["id_token"], post_logout_redirect_uri=SIGNED_OUT,
                   state="q")
    assert page.status_code == 200 and page_kind(page) == "logout"  # bob is asked about his own
    assert "bob" in page.text
    assert browser.silent("portal").error is None  # alice is still signed in
    assert bob.silent("portal").error is None
    done = bob.submit(page, {}, ("logout", "yes"))
    assert done.status_code == 303 and done.headers["Location"] == f"{SIGNED_OUT}?state=q"
    assert bob.silent("portal").codes == ["no_session"]
    assert browser.silent("portal").error is None


def test_invalid_hint_is_shown_not_redirected(op: LiveOP, browser: BrowserAgent) -> None:
    signed_in(op, browser)
    resp = browser.get("/logout", id_token_hint="e30.e30.sig", post_logout_redirect_uri=SIGNED_OUT)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert browser.silent("portal").error is None


def test_hint_for_another_client_than_client_id(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = signed_in(op, browser)
    resp = browser.get("/logout", id_token_hint=tokens["id_token"], client_id="docs")
    assert resp.status_code == 400


def test_logout_without_a_session(op: LiveOP, browser: BrowserAgent) -> None:
    resp = browser.get("/logout", client_id="portal", post_logout_redirect_uri=SIGNED_OUT)
    assert resp.status_code == 302 and resp.headers["Location"] == SIGNED_OUT
    assert browser.get("/logout").status_code == 200


def test_revocation(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = signed_in(op, browser)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert op.post_as("docs", "/revoke", token=tokens["access_token"]).status_code == 200
    # docs cannot revoke portal's token
    assert requests.get(f"{op.url}/userinfo", headers=bearer, timeout=10).status_code == 200

    assert op.post_as("portal", "/revoke", token=tokens["access_token"]).status_code == 200
    assert requests.get(f"{op.url}/userinfo", headers=bearer, timeout=10).status_code == 401

    assert op.post_as("portal", "/revoke", token=tokens["refresh_token"],
                      token_type_hint="refresh_token").status_code == 200
    assert op.token("portal", grant_type="refresh_token",
                    refresh_token=tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert op.post_as("portal", "/revoke", token="never-issued").status_code == 200
    assert requests.post(f"{op.url}/revoke", data={"token": "x"}, timeout=10).status_code == 401


def test_introspection(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = signed_in(op, browser)
    access = op.post_as("docs", "/introspect", token=tokens["access_token"]).json()
    assert access["active"] is True
    assert access["sub"] == "u-alice" and access["client_id"] == "portal"
    assert set(access["scope"].split()) == {"openid", "profile", "offline_access"}
    refresh = op.post_as("portal", "/introspect", token=tokens["refresh_token"]).json()
    assert refresh["active"] is True and refresh["client_id"] == "portal" and refresh["sub"] == "u-alice"
    assert "token_type" not in refresh  # RFC 7662 §2.2: an access token's type; a refresh token has none
    assert op.post_as("portal", "/introspect", token="nope").json() == {"active": False}
    unauthenticated = requests.post(f"{op.url}/introspect", data={"token": tokens["access_token"]},
                                    timeout=10)
    assert unauthenticated.status_code == 401
    op.clock.advance(601)
    assert op.post_as("portal", "/introspect", token=tokens["access_token"]).json() == {"active": False}


def test_consent_denied_sends_access_denied(op: LiveOP, browser: BrowserAgent) -> None:
    cb = browser.interact(browser.authorize_request("portal"), "alice", consent="deny")
    assert cb.error == "access_denied" and cb.params["state"] == "xyz" and cb.params["iss"] == op.url
    assert browser.silent("portal").error == "consent_required"  # signed in, nothing granted


def test_an_unregistered_post_logout_redirect_uri_is_explained_as_a_sign_out_problem(
        op: LiveOP, browser: BrowserAgent) -> None:
    signed_in(op, browser)
    page = browser.get("/logout", client_id="portal", post_logout_redirect_uri="https://elsewhere.example/")
    assert page.status_code == 400 and "Location" not in page.headers
    assert "<h1>This sign-out link does not work</h1>" in page.text  # not a "sign-in link"
    assert "What is wrong: post_logout_redirect_uri is not registered for this client" in page.text
    assert browser.silent("portal").error is None  # nothing was ended


def test_a_get_without_the_sessions_cookie_ends_nothing(op: LiveOP, browser: BrowserAgent) -> None:
    # a GET from this browser carries its cookie; one without it comes from elsewhere (attack review)
    tokens = signed_in(op, browser)
    resp = requests.get(f"{op.url}/logout", params={"id_token_hint": tokens["id_token"],
                                                    "post_logout_redirect_uri": SIGNED_OUT},
                        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == SIGNED_OUT
    assert browser.silent("portal").error is None  # still signed in


def test_a_cross_site_post_without_a_hint_asks_the_browsers_user(op: LiveOP, browser: BrowserAgent) -> None:
    # sent again from here with the cookie: the user is asked, not sent to "signed out" still signed in
    signed_in(op, browser)
    first = requests.post(f"{op.url}/logout", timeout=10, data={
        "client_id": "portal", "post_logout_redirect_uri": SIGNED_OUT, "state": "s"})
    (again,) = forms_of(first.text)
    page = browser.http.post(f"{op.url}/logout", data=again.fields, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and page_kind(page) == "logout"
    assert browser.silent("portal").error is None  # nothing ended before the user says so


def test_a_hint_from_an_earlier_session_asks_first(op: LiveOP, browser: BrowserAgent) -> None:
    # the hint's sid names a session that ended: a leaked old ID token does not end the new one (§2)
    old = signed_in(op, browser)
    assert browser.get("/logout", id_token_hint=old["id_token"]).status_code == 200  # ends session A
    signed_in(op, browser)  # session B
    page = browser.get("/logout", id_token_hint=old["id_token"], post_logout_redirect_uri=SIGNED_OUT)
    assert page.status_code == 200 and page_kind(page) == "logout"
    assert browser.silent("portal").error is None  # B goes on until its user confirms
