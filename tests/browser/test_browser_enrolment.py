"""Enrolment and the account page in a real browser: an app needing MFA offers an authenticator
app to a user who has none, and the account page lists (with each session's device), ends and withdraws."""

from __future__ import annotations

from typing import Any

import pyotp
from browser_support import Live, alice_at_portal, at_app, open_account, password, submit, wait_for
from selenium.webdriver.common.by import By


def test_bob_enrols_an_authenticator_app_while_signing_in_to_backoffice(driver: Any, live: Live) -> None:
    driver.get(live.authorize_url("backoffice"))
    password(driver, "bob")
    wait_for(driver, "#enrol-totp").click()
    secret = wait_for(driver, "#secret").text
    assert driver.find_element(By.CSS_SELECTOR, ".qr svg")  # the QR code, inline
    wrong = "000000" if pyotp.TOTP(secret).at(live.op.clock.now) != "000000" else "111111"
    wait_for(driver, "#otp").send_keys(wrong)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "not valid" in wait_for(driver, ".message").text
    assert live.op.store.credentials_of("u-bob") == {}  # nothing enrolled without the right code
    wait_for(driver, "#otp").send_keys(pyotp.TOTP(secret).at(live.op.clock.now))
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    answer = at_app(driver, live, "backoffice")
    assert answer.get("code"), answer
    (session,) = live.op.store.sessions_of("u-bob", live.op.clock.now)
    assert session.mfa and set(session.amr) >= {"pwd", "otp"}
    record = live.op.store.credentials_of("u-bob")["totp"]
    assert secret not in str(record)  # stored sealed, never in the clear


def test_account_page_lists_ends_and_withdraws(driver: Any, live: Live) -> None:
    alice_at_portal(driver, live)
    open_account(driver, live)  # her authenticator app first: a password alone does not open it
    sessions = wait_for(driver, "#sessions").text
    assert "Chrome on Linux" in sessions and "127.0.0.1" in sessions  # headless chromium, from loopback
    consents = wait_for(driver, "#consents").text
    assert "Employee portal" in consents
    submit(driver, driver.find_element(By.CSS_SELECTOR, "#consents button[value=withdraw]"))
    assert "withdrawn" in wait_for(driver, ".notice").text
    assert all(not s.consents for s in live.op.store.sessions_of("u-alice", live.op.clock.now))
    submit(driver, driver.find_element(By.CSS_SELECTOR, "#sessions button[value=end_session]"))
    assert "Sign in to your account" in wait_for(driver, "h1").text  # this browser's session ended
    assert live.op.store.sessions_of("u-alice", live.op.clock.now) == []


def test_the_account_page_fits_a_320_px_screen_and_names_each_button(driver: Any, live: Live) -> None:
    """WCAG 1.4.10: the page does not scroll sideways (a wide table scrolls in its own box); each row's
    button says which session or app it acts on (WCAG 2.4.6, 4.1.2)."""
    alice_at_portal(driver, live)
    open_account(driver, live)
    driver.set_window_size(320, 800)
    try:
        wait_for(driver, "#sessions")
        page = driver.execute_script("return [document.documentElement.scrollWidth, "
                                     "document.documentElement.clientWidth]")
        assert page[0] <= page[1], page
        end = driver.find_element(By.CSS_SELECTOR, "#sessions button[value=end_session]")
        assert end.get_attribute("aria-label") == "Sign out of this browser"  # alice's one session: this one
        withdraw = driver.find_element(By.CSS_SELECTOR, "#consents button[value=withdraw]")
        assert withdraw.get_attribute("aria-label") == "Withdraw the access of Employee portal"
    finally:
        driver.set_window_size(1000, 900)
