"""Silent SSO across clients, decided by each client's policy, over real HTTP (SPEC §2)."""

from __future__ import annotations

import pytest
from live_op import START, BrowserAgent, LiveOP, page_kind


def test_sign_in_once_then_each_client_decides_by_its_policy(op: LiveOP, browser: BrowserAgent) -> None:
    # alice signs in at the lenient portal: password and consent, no second factor
    portal = browser.sign_in("portal")
    assert portal.error is None
    assert op.exchange("portal", portal.params["code"])["id_token"]

    # docs: her session is good enough, but she has not granted docs anything yet
    docs = browser.silent("docs")
    assert (docs.error, docs.codes) == ("consent_required", ["consent_missing"])
    assert docs.params["state"] == "xyz" and docs.params["iss"] == op.url
    # interactively, single sign-on skips the password: only the consent page is shown
    page = browser.follow(browser.authorize_request("docs"))
    assert page_kind(page) == "consent"
    docs = browser.interact(page)
    assert docs.error is None and "code" in docs.params
    assert browser.silent("docs").params.get("code")

    # payments wants MFA, loa:2 and consent; its policy answers interaction_required (on_unmet)
    payments = browser.silent("payments-web")
    assert payments.error == "interaction_required"
    assert payments.codes == ["mfa_required", "acr_insufficient", "consent_missing"]
    # backoffice (first party, no consent) wants MFA, with the OpenID extension's error code
    backoffice = browser.silent("backoffice")
    assert (backoffice.error, backoffice.codes) == ("unmet_authentication_requirements", ["mfa_required"])

    # interactively at payments: no password again, the second-factor page, then consent
    before = browser.session_cookie
    page = browser.follow(browser.authorize_request("payments-web"))
    assert page_kind(page) == "otp"
    payments = browser.interact(page)
    assert payments.error is None, payments.params
    assert browser.session_cookie != before  # a new session id after the second factor
    claims = op.verify_id_token(op.exchange("payments-web", payments.params["code"])["id_token"],
                                "payments-web")
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"}
    assert claims["acr"] == "urn:policy-sso:loa:2"

    # now backoffice's policy is met: the silent request gets a code
    backoffice = browser.silent("backoffice")
    assert backoffice.error is None and backoffice.params["code"]
    claims = op.verify_id_token(op.exchange("backoffice", backoffice.params["code"])["id_token"],
                                "backoffice")
    assert claims["acr"] == "urn:policy-sso:loa:2" and claims["auth_time"] == START


def test_step_up_and_policy_idle_window(op: LiveOP, browser: BrowserAgent) -> None:
    scope = "openid profile payments:write"
    assert browser.sign_in("payments-web", scope=scope).error is None
    assert browser.silent("payments-web", scope=scope).params.get("code")

    op.clock.advance(6 * 60)  # the second factor is now older than "mfa within 5m"
    stale = browser.silent("payments-web", scope=scope)
    assert (stale.error, stale.codes) == ("interaction_required", ["step_up_required"])
    assert browser.silent("payments-web", scope="openid profile").params.get("code")
    fresh = browser.interact(browser.authorize_request("payments-web", scope=scope))
    assert fresh.error is None

    op.clock.advance(16 * 60)  # payments' own idle window is 15 minutes
    idle = browser.silent("payments-web")
    assert (idle.error, idle.codes) == ("login_required", ["inactivity_timeout"])
    assert browser.silent("portal").error == "consent_required"  # the tenant's 1-day window still holds


def test_max_age(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    op.clock.advance(120)
    assert browser.silent("portal", max_age="300").params.get("code")
    old = browser.silent("portal", max_age="60")
    assert (old.error, old.codes) == ("login_required", ["max_age_exceeded"])
    zero = browser.silent("portal", max_age="0")
    assert (zero.error, zero.codes) == ("login_required", ["max_age_exceeded"])

    # interactively, max_age=0 shows the password form despite the live session, then answers
    page = browser.follow(browser.authorize_request("portal", max_age="0"))
    assert page_kind(page) == "login"
    cb = browser.interact(page)
    assert cb.error is None
    claims = op.verify_id_token(op.exchange("portal", cb.params["code"])["id_token"], "portal")
    assert claims["auth_time"] == START + 120


def test_prompt_login_forces_a_fresh_sign_in(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    op.clock.advance(30)
    page = browser.follow(browser.authorize_request("portal", prompt="login"))
    assert page_kind(page) == "login"
    cb = browser.interact(page)
    assert cb.error is None
    claims = op.verify_id_token(op.exchange("portal", cb.params["code"])["id_token"], "portal")
    assert claims["auth_time"] == START + 30


def test_prompt_consent_asks_again(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    page = browser.follow(browser.authorize_request("portal", prompt="consent"))
    assert page_kind(page) == "consent"
    assert browser.interact(page).error is None


def test_id_token_hint_for_another_user(op: LiveOP, browser: BrowserAgent, new_browser) -> None:
    bob = new_browser()
    bob_code = bob.sign_in("portal", "bob").params["code"]
    bob_id_token = op.exchange("portal", bob_code)["id_token"]

    browser.sign_in("portal", "alice")
    other = browser.silent("portal", id_token_hint=bob_id_token)
    assert (other.error, other.codes) == ("login_required", ["subject_mismatch"])
    assert browser.silent("portal", login_hint="bob").codes == ["subject_mismatch"]
    assert browser.silent("portal", login_hint="alice").params.get("code")
    # OIDC Core §3.1.2.1: a hint may be the user's email address, and a username in another case
    for hint in ("alice@example.com", "Alice@Example.COM", "ALICE"):
        assert browser.silent("portal", login_hint=hint).params.get("code"), hint
    assert browser.silent("portal", login_hint="bob@example.com").codes == ["subject_mismatch"]

    # interactively the login page names the hinted account; signing in as bob replaces alice's session
    page = browser.follow(browser.authorize_request("portal", id_token_hint=bob_id_token))
    assert page_kind(page) == "login" and 'value="bob"' in page.text
    cb = browser.interact(page, "bob")
    assert cb.error is None
    bob_token = op.exchange("portal", cb.params["code"])["id_token"]
    assert op.verify_id_token(bob_token, "portal")["sub"] == "u-bob"


def test_id_token_hint_must_be_ours_and_for_this_client(op: LiveOP, browser: BrowserAgent) -> None:
    token = op.exchange("portal", browser.sign_in("portal").params["code"])["id_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad = browser.silent("portal", id_token_hint=forged)
    assert bad.error == "invalid_request"
    other_client = browser.silent("docs", id_token_hint=token)
    assert other_client.error == "invalid_request"


@pytest.mark.parametrize("prompt", ["none login", "none consent", "login none"])
def test_prompt_none_with_another_value_is_invalid_request(op: LiveOP, browser: BrowserAgent,
                                                           prompt: str) -> None:
    browser.sign_in("portal")
    cb = browser.follow(browser.authorize_request("portal", prompt=prompt))
    assert cb.error == "invalid_request"
    assert cb.params["state"] == "xyz" and cb.params["iss"] == op.url


@pytest.mark.parametrize(("advance", "expected"), [
    (86400, None), (86401, "login_required"),  # the tenant's inactivity window, to the second
], ids=["idle_exactly_1d", "idle_1d_1s"])
def test_idle_session_expires_in_the_store(op: LiveOP, browser: BrowserAgent, advance: int,
                                           expected: str | None) -> None:
    browser.sign_in("portal")
    op.clock.advance(advance)
    assert browser.silent("portal").error == expected


def test_sliding_lifetime_and_require_login_after(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    for _ in range(14):  # active every day: the idle window never closes
        op.clock.advance(86000)
        assert browser.silent("portal").error is None
    op.clock.advance(14 * 86400 - 14 * 86000 + 1)  # 14 days and 1 s after the only sign-in
    expired = browser.silent("portal")
    assert expired.error == "login_required"
    assert set(expired.codes) <= {"no_session", "session_expired"}


def test_logout_then_prompt_none_is_login_required(op: LiveOP, browser: BrowserAgent) -> None:
    token = op.exchange("portal", browser.sign_in("portal").params["code"])["id_token"]
    resp = browser.get("/logout", id_token_hint=token)
    assert resp.status_code == 200 and "signed out" in resp.text
    after = browser.silent("portal")
    assert (after.error, after.codes) == ("login_required", ["no_session"])


def test_user_without_a_second_factor_cannot_meet_an_mfa_policy(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.submit(browser.follow(browser.authorize_request("payments-web")),
                                         {"username": "bob", "password": "builder"}))
    assert page_kind(page) == "factor" and "needs a second factor" in page.text  # told, not bounced
    assert [s.amr for s in op.store.sessions_of("u-bob", op.clock.now)] == [("pwd",)]  # nothing upgraded
    cb = browser.interact(page, "bob")  # he goes back to the app, which hears why
    assert cb.error == "interaction_required"
    assert "mfa_required" in cb.codes


def test_essential_acr_in_claims_and_acr_values(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    loa2 = '{"id_token": {"acr": {"essential": true, "value": "urn:policy-sso:loa:2"}}}'
    essential = browser.silent("portal", claims=loa2)
    assert (essential.error, essential.codes) == ("login_required", ["acr_insufficient"])
    loa1 = '{"id_token": {"acr": {"essential": true, "values": ["urn:policy-sso:loa:1"]}}}'
    assert browser.silent("portal", claims=loa1).params.get("code")
    assert browser.silent("portal", claims="{not json").error == "invalid_request"

    # interactively, the essential acr is met by the second-factor page
    page = browser.follow(browser.authorize_request("portal", claims=loa2))
    assert page_kind(page) == "otp"
    cb = browser.interact(page)
    assert cb.error is None
    claims = op.verify_id_token(op.exchange("portal", cb.params["code"])["id_token"], "portal")
    assert claims["acr"] == "urn:policy-sso:loa:2"

    # docs: acr_values loa:3 asks for a hardware key, which no hosted page offers
    browser.interact(browser.authorize_request("docs"))
    # (requested acr_values are enforced: the session is below loa:3 as well)
    hwk = browser.silent("docs", acr_values="urn:policy-sso:loa:3")
    assert (hwk.error, hwk.codes) == ("login_required", ["acr_insufficient", "amr_missing"])
    refused = browser.interact(browser.authorize_request("docs", acr_values="urn:policy-sso:loa:3"))
    assert (refused.error, refused.codes) == ("login_required", ["acr_insufficient", "amr_missing"])
