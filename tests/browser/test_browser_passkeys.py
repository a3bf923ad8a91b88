"""Passkeys in a real browser with Chrome's virtual authenticator (WebDriver §Virtual Authenticators):
registration on the account page, sign-in as a second factor and from the login page; loa:3."""

from __future__ import annotations

from typing import Any

from browser_support import Live, alice_at_portal, at_app, open_account, password, submit, wait_for
from selenium.webdriver.common.by import By

ISSUER_HOST = "localhost"  # a WebAuthn RP ID is a host name, never an IP address
LOA3 = "urn:policy-sso:loa:3"


def tokens(live: Live, client_id: str, code: str) -> dict[str, Any]:
    resp = live.op.token(client_id, grant_type="authorization_code", code=code,
                         redirect_uri=live.redirect_uri(client_id))
    assert resp.status_code == 200, resp.text
    return live.op.verify_id_token(resp.json()["id_token"], client_id)


def test_register_then_reach_loa3_as_second_factor_and_alone(driver: Any, live: Live,
                                                              authenticator: Any) -> None:
    # alice signs in with her password, then adds a passkey on her account page
    alice_at_portal(driver, live)
    open_account(driver, live)  # her authenticator app first: a password alone does not open it
    wait_for(driver, "#enrol-passkey").click()
    wait_for(driver, "#passkey-button").click()
    assert "passkey was added" in wait_for(driver, ".notice").text
    (record,) = [r for r in live.op.store.credentials_of("u-alice").values() if r["kind"] == "passkey"]
    assert record["synced"] is False and "public_key" in record

    # docs at loa:3 wants a hardware key: the second-factor page offers the passkey
    driver.get(live.authorize_url("docs", acr_values=LOA3))
    submit(driver, wait_for(driver, "#passkey-button"))
    wait_for(driver, "button[value=allow]").click()
    claims = tokens(live, "docs", at_app(driver, live, "docs")["code"])
    assert claims["acr"] == LOA3 and {"pwd", "hwk", "pin", "mfa"} <= set(claims["amr"])

    # silent SSO into another client honours the level the passkey reached
    driver.get(live.authorize_url("portal", prompt="none", acr_values=LOA3))
    claims = tokens(live, "portal", at_app(driver, live, "portal")["code"])
    assert claims["acr"] == LOA3

    # a new browser session: the passkey alone signs in from the login page and reaches loa:3
    driver.get(f"{live.op.url}/favicon.ico")  # cookies are cleared per site: the provider's
    driver.delete_all_cookies()
    driver.get(live.authorize_url("portal", acr_values=LOA3))
    # conditional UI: the login page asks for a passkey through the username field's autofill, and
    # the virtual authenticator (one passkey, user verified) answers it without a click
    wait_for(driver, "button[value=allow]").click()
    claims = tokens(live, "portal", at_app(driver, live, "portal")["code"])
    assert claims["acr"] == LOA3 and set(claims["amr"]) == {"hwk", "pin", "mfa"}
    after = next(r for r in live.op.store.credentials_of("u-alice").values() if r["kind"] == "passkey")
    assert after["sign_count"] > record["sign_count"]  # each assertion moved the count on


def test_password_and_totp_do_not_reach_loa3(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("portal", acr_values=LOA3))
    password(driver, "alice")
    page = wait_for(driver, "main").text
    assert "needs a second factor" in page and "passkey" in page  # explained, with enrolment offered
    assert live.redirect_uri("portal") not in driver.current_url
    # her authenticator app first: her password alone does not add a factor to her account
    assert not driver.find_elements(By.ID, "enrol-passkey") and "First confirm it is you" in page
    driver.find_element(By.ID, "otp").send_keys(live.op.totp("alice"))
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary"))
    after = wait_for(driver, "main").text  # TOTP is not loa:3 either; the page knows she has two factors
    assert "needs another sign-in method" in after and "with your password" not in after
    assert "You are signed in as alice" in after
    assert driver.find_elements(By.ID, "enrol-passkey")


def bob_adds_a_passkey_at_backoffice(driver: Any, live: Live) -> dict[str, str]:
    """Bob (a password only) signs in at backoffice, which needs MFA: he adds a passkey and uses it."""
    driver.get(live.authorize_url("backoffice"))
    password(driver, "bob")
    wait_for(driver, "#enrol-passkey").click()
    submit(driver, wait_for(driver, "#passkey-button"))
    # registering is not signing in: the sign-in asks for the new passkey once
    assert "Use your passkey" in wait_for(driver, "h1").text
    assert [s.amr for s in live.op.store.sessions_of("u-bob", live.op.clock.now)] == [("pwd",)]
    wait_for(driver, "#passkey-button").click()
    return at_app(driver, live, "backoffice")


def test_bob_adds_a_passkey_from_the_factor_page_and_uses_it(driver: Any, live: Live,
                                                             authenticator: Any) -> None:
    answer = bob_adds_a_passkey_at_backoffice(driver, live)
    assert answer.get("code"), answer
    (session,) = live.op.store.sessions_of("u-bob", live.op.clock.now)
    assert set(session.amr) == {"pwd", "hwk", "pin", "mfa"}


def test_a_passkey_opens_the_account_page_after_a_password_sign_in(driver: Any, live: Live,
                                                                   authenticator: Any) -> None:
    # bob's only second factor is a passkey: his password alone opens his account page no more
    bob_adds_a_passkey_at_backoffice(driver, live)
    driver.get(f"{live.op.url}/healthz")
    driver.delete_all_cookies()  # the provider's, this time: a password at the account page's own sign-in
    driver.get(f"{live.op.url}/account")
    password(driver, "bob")
    assert "Confirm it is you" in wait_for(driver, "h1").text
    assert not driver.find_elements(By.ID, "otp")  # no authenticator app: the passkey is offered
    def amrs() -> list[tuple[str, ...]]:
        return sorted(s.amr for s in live.op.store.sessions_of("u-bob", live.op.clock.now))

    assert ("pwd",) in amrs()  # this browser's new session: a password only
    submit(driver, wait_for(driver, "#passkey-button"))
    assert "Passkey" in wait_for(driver, "#factors").text
    assert ("pwd",) not in amrs() and all("hwk" in amr for amr in amrs())
