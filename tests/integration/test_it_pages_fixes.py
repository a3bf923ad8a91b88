"""The hosted pages when tabs disagree: a browser reviewer's walk (two tabs, Back, a page left open).

- A consent page counts for the user it named: when another tab signs someone
  else in meanwhile, Allow records nothing and sends no code; the page asks again.
- The account page's forms keep working after a re-authentication in another tab
  (the session id moves, the session is the same); a sign-out still outdates them.
- A code refused on a step another tab already cleared shows the step the
  sign-in is at now, not the password form.
- The second-factor page has a way back to the app.
- Back to a finished sign-in's page says it is complete, not that its link is broken.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import requests
from live_op import BrowserAgent, Callback, LiveOP, forms_of, page_kind

LOA2 = "urn:policy-sso:loa:2"


def shown_page(browser: BrowserAgent, resp: requests.Response) -> requests.Response:
    page = browser.follow(resp)
    assert not isinstance(page, Callback), page.params
    return page


def signed_in_page(browser: BrowserAgent, client_id: str, username: str, **params: str) -> requests.Response:
    """Start a sign-in at ``client_id`` and type ``username``'s password; return the next page."""
    login = shown_page(browser, browser.authorize_request(client_id, **params))
    assert page_kind(login) == "login", login.text[:300]
    return shown_page(browser, browser.submit(login, {"username": username, "password": {
        "alice": "wonderland", "bob": "builder", "carol": "singer"}[username]}))


# --- #1 consent binds to the user it showed ------------------------------------------------

def test_allow_on_a_page_shown_to_carol_is_not_bobs_consent(op: LiveOP, browser: BrowserAgent) -> None:
    tab_b = signed_in_page(browser, "docs", "carol", state="tab-b")
    assert page_kind(tab_b) == "consent" and "carol" in tab_b.text
    # tab A: bob signs in on the same browser (carol's session is replaced)
    done = browser.interact(browser.authorize_request("portal", prompt="login", state="tab-a"), "bob")
    assert done.error is None and done.params["state"] == "tab-a"

    again = shown_page(browser, browser.submit(tab_b, {}, ("decision", "allow")))
    assert again.status_code == 200 and page_kind(again) == "consent"
    assert "You are now signed in as bob" in again.text and "Signed in as <strong>bob</strong>" in again.text
    (bob,) = op.store.sessions_of("u-bob", op.clock.now)
    assert "docs" not in bob.consents  # nothing recorded for what bob never saw

    answer = browser.interact(again, "bob")  # bob decides on the page that names him
    assert answer.error is None and answer.params["state"] == "tab-b"
    tokens = op.exchange("docs", answer.params["code"])
    assert op.verify_id_token(tokens["id_token"], "docs")["sub"] == "u-bob"


def test_deny_on_a_page_shown_to_someone_else_asks_again_too(op: LiveOP, browser: BrowserAgent) -> None:
    tab_b = signed_in_page(browser, "docs", "carol")
    browser.interact(browser.authorize_request("portal", prompt="login"), "bob")
    again = shown_page(browser, browser.submit(tab_b, {}, ("decision", "deny")))
    assert page_kind(again) == "consent" and "You are now signed in as bob" in again.text


def test_a_consent_form_with_a_note_of_another_user_records_nothing(op: LiveOP,
                                                                    browser: BrowserAgent) -> None:
    page = signed_in_page(browser, "docs", "carol")
    form = forms_of(page.text)[0]
    data = {**form.fields, "decision": "allow", "shown": "0" * 64}
    resp = browser.http.post(urllib.parse.urljoin(page.url, form.action), data=data, allow_redirects=False,
                             timeout=10)
    assert resp.status_code == 200 and page_kind(resp) == "consent"
    (carol,) = op.store.sessions_of("u-carol", op.clock.now)
    assert "docs" not in carol.consents


def test_a_re_authentication_of_the_same_user_keeps_the_consent_page_good(op: LiveOP,
                                                                         browser: BrowserAgent) -> None:
    tab_b = signed_in_page(browser, "docs", "carol")
    browser.interact(browser.authorize_request("docs", prompt="login"), "carol")  # carol again: same user
    answer = browser.follow(browser.submit(tab_b, {}, ("decision", "allow")))
    assert isinstance(answer, Callback) and answer.error is None and answer.params.get("code")


# --- #2 the account page's forms survive a re-authentication in another tab -------------------

def account_form(browser: BrowserAgent) -> dict[str, str]:
    page = browser.account()
    assert page.status_code == 200 and 'id="sessions"' in page.text
    return next(f for f in forms_of(page.text) if "csrf_token" in f.fields).fields


def test_an_open_account_page_still_works_after_signing_in_again_elsewhere(op: LiveOP,
                                                                          browser: BrowserAgent) -> None:
    browser.sign_in("portal", "bob")
    fields = account_form(browser)
    before = browser.session_cookie
    op.clock.advance(30)
    browser.sign_in("portal", "bob", prompt="login")  # another tab: the session id moves
    assert browser.session_cookie != before
    resp = browser.http.post(f"{op.url}/account", allow_redirects=False, timeout=10, data={
        "csrf_token": fields["csrf_token"], "action": "withdraw", "client": "portal"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/account?done=consent_withdrawn"


def test_an_account_page_from_before_a_sign_out_is_out_of_date_in_plain_words(op: LiveOP,
                                                                            browser: BrowserAgent) -> None:
    browser.sign_in("portal", "bob")
    fields = account_form(browser)
    browser.http.cookies.clear()  # signed out (another tab) ...
    op.clock.advance(30)
    browser.sign_in("portal", "bob")  # ... and in again: a new session
    resp = browser.http.post(f"{op.url}/account", allow_redirects=False, timeout=10, data={
        "csrf_token": fields["csrf_token"], "action": "withdraw", "client": "portal"})
    assert resp.status_code == 403 and "This page is out of date" in resp.text
    assert "reload it and try again" in resp.text and "CSRF" not in resp.text


def test_another_users_account_token_does_not_work(op: LiveOP,
                                                   new_browser: Callable[[], BrowserAgent]) -> None:
    bob, carol = new_browser(), new_browser()
    bob.sign_in("portal", "bob")
    carol.sign_in("portal", "carol")
    fields = account_form(bob)
    resp = carol.http.post(f"{op.url}/account", allow_redirects=False, timeout=10, data={
        "csrf_token": fields["csrf_token"], "action": "withdraw", "client": "portal"})
    assert resp.status_code in (200, 403) and "done=" not in resp.headers.get("Location", "")
    (session,) = op.store.sessions_of("u-carol", op.clock.now)
    assert "portal" in session.consents


# --- #4 a refused code on a step already cleared ------------------------------------------

def test_a_used_code_on_a_step_another_tab_cleared_shows_where_the_sign_in_is(op: LiveOP,
                                                                             browser: BrowserAgent) -> None:
    browser.sign_in("portal", "alice")
    tab_a = shown_page(browser, browser.authorize_request("payments-web"))
    tab_b = shown_page(browser, browser.authorize_request("portal", acr_values=LOA2))
    assert page_kind(tab_a) == page_kind(tab_b) == "otp"
    code = op.totp("alice")
    done = browser.follow(browser.submit(tab_b, {"otp": code}))
    assert isinstance(done, Callback) and done.error is None
    resp = browser.submit(tab_a, {"otp": code})  # refused: already used; the step is cleared anyway
    assert resp.status_code == 200 and page_kind(resp) == "consent", resp.text[:400]
    assert "already done" in resp.text and 'name="password"' not in resp.text


def test_a_wrong_password_still_shows_the_password_form(op: LiveOP, browser: BrowserAgent) -> None:
    login = shown_page(browser, browser.authorize_request("portal"))
    resp = browser.submit(login, {"username": "bob", "password": "wrong"})
    assert resp.status_code == 200 and page_kind(resp) == "login" and "Wrong username" in resp.text


# --- #6 a way back to the app from the second-factor page -----------------------------------

def test_the_second_factor_page_can_go_back_to_the_app(op: LiveOP, browser: BrowserAgent) -> None:
    page = signed_in_page(browser, "payments-web", "alice", state="back")
    assert page_kind(page) == "otp" and "Go back to" in page.text
    (cancel,) = [f for f in forms_of(page.text) if ("cancel", "yes") in f.buttons]
    resp = browser.http.post(urllib.parse.urljoin(page.url, cancel.action),
                             data={**cancel.fields, "cancel": "yes"}, allow_redirects=False, timeout=10)
    answer = browser.follow(resp)
    assert isinstance(answer, Callback) and answer.error and answer.params["state"] == "back"


# --- #7 Back to a finished sign-in ----------------------------------------------------------

def test_back_to_a_finished_sign_in_says_it_is_complete(op: LiveOP, browser: BrowserAgent,
                                                        new_browser: Callable[[], BrowserAgent]) -> None:
    consent = signed_in_page(browser, "docs", "carol")
    answer = browser.follow(browser.submit(consent, {}, ("decision", "allow")))
    assert isinstance(answer, Callback) and answer.params.get("code")
    back = browser.http.get(consent.url, allow_redirects=False, timeout=10)  # Back, from the app
    assert back.status_code == 200 and "This sign-in is already complete" in back.text
    assert "does not work" not in back.text
    resent = browser.submit(consent, {}, ("decision", "allow"))  # its form again: nothing more happens
    assert resent.status_code == 200 and "already complete" in resent.text
    assert "Location" not in resent.headers
    other = new_browser().http.get(consent.url, allow_redirects=False, timeout=10)
    assert other.status_code == 400 and "This sign-in link does not work" in other.text  # not this browser's
    gone = browser.http.get(f"{op.url}/login", params={"interaction": "never-started"}, timeout=10)
    assert gone.status_code == 400 and "This sign-in link does not work" in gone.text


def test_a_forged_completion_cookie_is_not_believed(op: LiveOP, browser: BrowserAgent) -> None:
    login = shown_page(browser, browser.authorize_request("portal"))
    interaction_id = urllib.parse.parse_qs(urllib.parse.urlsplit(login.url).query)["interaction"][0]
    browser.http.cookies.clear()
    browser.http.cookies.set("psso_completed", f"{interaction_id}:{'0' * 64}")
    page = browser.get("/login", interaction=interaction_id)
    assert page.status_code == 400 and "does not work" in page.text


# --- #2 the sign-out confirmation survives a re-authentication in another tab ----------------

def sign_out_page(op: LiveOP, browser: BrowserAgent) -> requests.Response:
    target = op.tenant.clients["portal"].post_logout_redirect_uris[0]
    page = browser.get("/logout", client_id="portal", post_logout_redirect_uri=target, state="bye")
    assert page.status_code == 200 and page_kind(page) == "logout", page.text[:300]
    return page


def test_an_open_sign_out_page_still_signs_out_after_a_step_up_elsewhere(op: LiveOP,
                                                                        browser: BrowserAgent) -> None:
    browser.sign_in("portal", "alice")
    page = sign_out_page(op, browser)
    op.clock.advance(30)
    browser.sign_in("payments-web", "alice")  # another tab: a step-up with her code moves the session id
    resp = browser.submit(page, {}, ("logout", "yes"))
    assert resp.status_code == 303 and resp.headers["Location"].endswith("state=bye"), resp.text[:300]
    assert op.store.sessions_of("u-alice", op.clock.now) == []
    assert browser.silent("portal").error == "login_required"


def test_a_sign_out_page_from_an_earlier_session_is_out_of_date_in_plain_words(op: LiveOP,
                                                                              browser: BrowserAgent) -> None:
    browser.sign_in("portal", "bob")
    page = sign_out_page(op, browser)
    browser.http.cookies.clear()
    op.clock.advance(30)
    browser.sign_in("portal", "bob")  # a new session
    resp = browser.submit(page, {}, ("logout", "yes"))
    assert resp.status_code == 403 and "This page is out of date" in resp.text
    assert "CSRF" not in resp.text and len(op.store.sessions_of("u-bob", op.clock.now)) == 2  # none ended


# --- #3 a level a code cannot reach is asked of the passkey alone ------------------------------

def test_a_level_only_a_passkey_reaches_offers_no_code_form(op: LiveOP, browser: BrowserAgent) -> None:
    """carol has an authenticator app and a passkey; loa:3 needs a hardware key, so the page asks for the
    passkey and offers no code form (a valid code used to re-show the page, saying nothing)."""
    op.store.put_credential("u-carol", "pk-1", {"kind": "passkey", "synced": False, "label": "Key"})
    page = signed_in_page(browser, "portal", "carol", acr_values="urn:policy-sso:loa:3")
    assert page_kind(page) != "otp" and 'name="otp"' not in page.text, page.text[:400]
    assert "Go back to" in page.text
    two = signed_in_page(browser, "portal", "carol", acr_values=LOA2, prompt="login")
    assert page_kind(two) == "otp"  # loa:2: the code clears it, so its form is there
