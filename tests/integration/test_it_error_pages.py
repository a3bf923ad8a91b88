"""The provider's own error pages: they say what is wrong, never in a visitor's words.

An attack review put a sentence of its own ("Your account has been suspended,
call …") on the page through a client_id or a parameter name the error
quoted; the page is the provider's, so that is phishing text with its name on it.
"""

from __future__ import annotations

import pytest
import requests
from live_op import BrowserAgent, LiveOP

PHISH = "Your account has been suspended. Call +1 555 0100 at once"


@pytest.mark.parametrize(("path", "params"), [
    ("/authorize", {"client_id": PHISH, "redirect_uri": "http://127.0.0.1:9001/callback"}),
    ("/logout", {"client_id": PHISH}),
    ("/authorize", f"client_id=portal&{PHISH}=1&{PHISH}=2"),
], ids=["authorize-client-id", "logout-client-id", "repeated-parameter-name"])
def test_no_visitor_sentence_reaches_the_page(op: LiveOP, path: str, params: object) -> None:
    page = requests.get(f"{op.url}{path}", params=params, timeout=10)
    assert page.status_code == 400 and "What is wrong:" in page.text
    assert "suspended" not in page.text and "555" not in page.text


def test_a_refused_enrolment_says_why_not_csrf(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")  # alice, a password only: her authenticator app has not been used
    page = browser.get("/enrol/totp")
    assert page.status_code == 403 and "You cannot add a factor now" in page.text
    assert "not sent from here" not in page.text


def test_the_sign_out_page_names_the_app_as_the_other_pages_do(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    page = browser.get("/logout", client_id="portal")
    client = op.tenant.clients["portal"]
    assert client.client_name and client.client_name != client.name
    assert client.client_name in page.text and client.name not in page.text  # not the admins' note


def test_enrolling_without_a_session_goes_to_the_account_page(op: LiveOP, browser: BrowserAgent) -> None:
    resp = browser.get("/enrol/totp")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/account")


def test_setting_up_an_authenticator_app_says_it_replaces_the_one_there(op: LiveOP,
                                                                       browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    browser.account()  # alice confirms with her seeded app
    page = browser.get("/enrol/totp")
    assert page.status_code == 200 and "replaces it" in page.text
    bob = BrowserAgent(op)
    bob.sign_in("portal", "bob")
    assert "replaces it" not in bob.get("/enrol/totp").text  # his first


def test_a_sign_in_the_policy_wants_more_of_says_so_on_the_password_page(op: LiveOP,
                                                                         browser: BrowserAgent) -> None:
    """Signed in with a passkey alone, at an app whose policy asks for a password (or Windows sign-in) too."""
    from policy_sso.sessions.model import AuthEvent, new_session

    session = new_session("u-alice", (AuthEvent("hwk", op.clock.now),), op.clock.now)
    op.store.create_session(session)
    browser.http.cookies.set("psso_session", session.id, domain="127.0.0.1", path="/")
    page = browser.follow(browser.authorize_request("docs"))
    assert not hasattr(page, "params") and 'name="password"' in page.text
    assert "You are signed in as alice, but Documentation also asks for your password." in page.text
    assert 'value="alice"' in page.text  # her name is filled in
