"""A browser reviewer's findings on the hosted pages, walked again in chromium: a first passkey added
on /account confirms instead of locking the page, the second-factor page goes back to the app, and
Back after a finished sign-in says it is complete."""

from __future__ import annotations

from typing import Any

from browser_support import Live, alice_at_portal, at_app, password, submit, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ISSUER_HOST = "localhost"  # passkeys need a host name as their RP ID


def test_a_first_passkey_added_on_the_account_page_is_confirmed(driver: Any, live: Live,
                                                                authenticator: Any) -> None:
    # bob has a password only: his account page opens, he adds his first passkey there
    driver.get(live.authorize_url("portal"))
    password(driver, "bob")
    wait_for(driver, "button[value=allow]").click()
    at_app(driver, live, "portal")
    driver.get(f"{live.op.url}/account")
    wait_for(driver, "#enrol-passkey").click()
    submit(driver, wait_for(driver, "#passkey-button"))
    assert "Your passkey was added." in wait_for(driver, ".notice").text
    assert "Passkey" in wait_for(driver, "#factors").text
    # registering is not signing in: the session's methods stay what they were
    assert [s.amr for s in live.op.store.sessions_of("u-bob", live.op.clock.now)] == [("pwd",)]

    # the note is this session's: a new password-only session is asked for the passkey
    driver.delete_cookie("psso_session")
    live.op.clock.advance(5)  # a session begun later (the note names when its session began)
    driver.get(f"{live.op.url}/account")
    password(driver, "bob")
    assert "Confirm it is you" in wait_for(driver, "h1").text


def test_the_second_factor_page_goes_back_to_the_app(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("payments-web"))
    password(driver, "alice")
    wait_for(driver, "#otp")
    back = driver.find_element(By.CSS_SELECTOR, "button[name=cancel]")
    assert "Go back to" in back.text
    back.click()
    answer = at_app(driver, live, "payments-web")
    assert answer.get("error") and answer["state"] == "st8" and "code" not in answer


def test_back_after_a_finished_sign_in_says_it_is_complete(driver: Any, live: Live) -> None:
    alice_at_portal(driver, live)
    driver.back()  # the consent page's address, now that the sign-in is over
    WebDriverWait(driver, 5).until(lambda d: d.current_url.startswith(live.op.url))
    heading = wait_for(driver, "h1").text
    assert heading == "This sign-in is already complete", heading
    assert "does not work" not in driver.find_element(By.TAG_NAME, "main").text
