"""The hosted pages in a real browser: sign-in with a password and a code, consent, sign-out,
the page for an app that needs a factor the user lacks, throttling, focus and the icon."""

from __future__ import annotations

from typing import Any

import requests
from browser_support import PASSWORDS, Live, alice_at_portal, at_app, password, submit, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def test_password_totp_and_consent_reach_the_app(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("payments-web", "openid payments:read"))
    password(driver, "alice")
    wait_for(driver, "#otp").send_keys(live.op.totp("alice"))
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait_for(driver, "button[value=allow]")
    page = driver.find_element(By.TAG_NAME, "main").text
    assert "See your payments and their history" in page  # tenant.yaml's description of payments:read
    assert "Payments" in page and "MFA required" not in page  # client_name, not the note
    allow = driver.find_element(By.CSS_SELECTOR, "button[value=allow]")
    deny = driver.find_element(By.CSS_SELECTOR, "button[value=deny]")
    assert allow.value_of_css_property("background-color") != deny.value_of_css_property("background-color")
    allow.click()
    answer = at_app(driver, live, "payments-web")
    assert answer.get("code") and answer.get("state") == "st8"


def test_deny_tells_the_app_access_denied(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("docs", "openid docs:read"))
    password(driver, "carol")
    wait_for(driver, "button[value=deny]").click()
    assert at_app(driver, live, "docs")["error"] == "access_denied"


def test_keyboard_only_sign_in_with_a_visible_focus_ring(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("portal"))
    field = wait_for(driver, "#username")
    assert driver.switch_to.active_element == field  # autofocus: typing starts at once
    field.send_keys("alice", Keys.TAB)
    focused = driver.switch_to.active_element
    assert focused.get_attribute("id") == "password"
    # the ring: a 3px outline in the focus colour, not the browser's faint default
    assert focused.value_of_css_property("outline-width") == "3px"
    focused.send_keys(PASSWORDS["alice"], Keys.TAB)
    button = driver.switch_to.active_element
    assert button.tag_name == "button" and button.value_of_css_property("outline-style") == "solid"
    button.send_keys(Keys.ENTER)
    wait_for(driver, "button[value=allow]").send_keys(Keys.ENTER)  # portal asks consent for profile
    assert at_app(driver, live, "portal").get("code")


def test_an_app_needing_a_factor_the_user_lacks_explains_and_upgrades_nothing(driver: Any,
                                                                              live: Live) -> None:
    # backoffice requires MFA; bob has only a password
    driver.get(live.authorize_url("backoffice"))
    password(driver, "bob")
    wait_for(driver, "h1")
    page = driver.find_element(By.TAG_NAME, "main").text
    assert "Back office needs a second factor" in page
    assert "unmet_authentication_requirements" not in page and "mfa_required" not in page
    assert live.redirect_uri("backoffice") not in driver.current_url  # not bounced to the app
    sessions = live.op.store.sessions_of("u-bob", live.op.clock.now)
    assert [s.amr for s in sessions] == [("pwd",)]  # signed in with the password, and no more
    driver.find_element(By.CSS_SELECTOR, "button[name=cancel]").click()
    answer = at_app(driver, live, "backoffice")
    assert answer["error"] == "unmet_authentication_requirements" and "code" not in answer


def test_throttled_sign_in_keeps_the_form_and_says_when(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("portal"))
    for _ in range(12):  # the demo allows 10 tries a minute from one address, fewer per account
        password(driver, "alice", "not-the-password")
        message = wait_for(driver, ".message").text
        if "Try again in" in message:
            break
    else:
        raise AssertionError(f"never throttled: {message}")
    wait = int(message.split("Try again in ")[1].split()[0])
    assert 0 < wait < 900  # within the sign-in's own lifetime: waiting, then trying, works
    assert "temporarily_unavailable" not in driver.page_source
    assert driver.find_element(By.ID, "username").get_attribute("value") == "alice"  # the form stays
    live.op.clock.advance(wait + 1)
    password(driver, "alice")
    wait_for(driver, "button[value=allow]")


def test_sign_out_asks_first(driver: Any, live: Live) -> None:
    alice_at_portal(driver, live)
    driver.get(f"{live.op.url}/logout")
    submit(driver, wait_for(driver, "button[value=yes]"))  # the confirmation page has an h1 too
    assert "You are signed out" in wait_for(driver, "h1").text
    assert live.op.store.sessions_of("u-alice", live.op.clock.now) == []


def test_a_relying_partys_cross_site_logout_post_signs_the_browser_out(driver: Any, live: Live) -> None:
    # RP-Initiated Logout by form post from the app's own page: SameSite=Lax keeps the cookie back from
    # that POST, so the provider's page sends it again from its origin, with the cookie
    import html
    import urllib.parse

    alice_at_portal(driver, live)
    code = live.answer(driver.current_url)["code"]
    resp = live.op.token("portal", grant_type="authorization_code", code=code,
                         redirect_uri=live.redirect_uri("portal"))
    id_token = resp.json()["id_token"]
    target = live.op.tenant.clients["portal"].post_logout_redirect_uris[0]
    fields = {"id_token_hint": id_token, "post_logout_redirect_uri": target, "state": "bye"}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    page = (f'<form method="post" action="{live.op.url}/logout">{inputs}</form>'
            "<script>document.forms[0].submit()</script>")
    driver.get("data:text/html," + urllib.parse.quote(page))  # another origin: an opaque one
    WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(target))
    assert driver.current_url == f"{target}?state=bye"
    assert live.op.store.sessions_of("u-alice", live.op.clock.now) == []


def test_form_post_and_logout_reach_the_app_under_the_pages_form_action(driver: Any, live: Live) -> None:
    """The pages' CSP form-action names the app's origin: Chrome applies it to the form_post page's
    submission and to the redirects after the consent and logout forms, so each must reach the app."""
    import urllib.parse

    driver.get(live.authorize_url("portal", response_mode="form_post"))
    password(driver, "alice")
    wait_for(driver, "button[value=allow]").click()
    posted = dict(urllib.parse.parse_qsl(wait_for(driver, "#posted").text))
    assert driver.current_url == live.redirect_uri("portal")
    assert posted.get("code") and posted["state"] == "st8"
    target = live.op.tenant.clients["portal"].post_logout_redirect_uris[0]
    query = urllib.parse.urlencode({"client_id": "portal", "post_logout_redirect_uri": target,
                                    "state": "bye"})
    driver.get(f"{live.op.url}/logout?{query}")
    wait_for(driver, "button[value=yes]").click()
    WebDriverWait(driver, 5).until(lambda d: d.current_url.startswith(target))
    assert driver.current_url == f"{target}?state=bye"
    assert live.op.store.sessions_of("u-alice", live.op.clock.now) == []


def test_errors_speak_to_people(driver: Any, live: Live) -> None:
    driver.get(f"{live.op.url}/login?interaction=gone")
    text = wait_for(driver, "main").text
    assert "This sign-in link does not work" in text
    assert "invalid_request" in driver.find_element(By.CSS_SELECTOR, ".details").text  # a detail only
    assert "invalid_request" not in driver.find_element(By.TAG_NAME, "h1").text


def test_favicon_is_served_and_cached(live: Live) -> None:
    resp = requests.get(f"{live.op.url}/favicon.ico", timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("image/svg+xml")
    assert "max-age" in resp.headers["Cache-Control"]
