"""sso.active: false over HTTP (issue 13; IBM App ID's "SSO off"): each app signs the user in itself.

A session serves the client it was created at; another client's prompt=none is
refused with sso_disabled, and signing in there gives that client its own session.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from live_op import BrowserAgent, LiveOP, page_kind, with_settings

from policy_sso.tenant import Tenant


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    def sso_off(url: str) -> Tenant:
        return with_settings(demo_tenant, issuer=url, sso_active=False)
    return sso_off


# joserfc warns that RFC 9864 deprecates "EdDSA"; the docs client's ID tokens are signed with it
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_each_app_signs_the_user_in_itself(op: LiveOP, browser: BrowserAgent) -> None:
    # app A: a password sign-in works, and its session serves app A silently afterwards
    first = browser.sign_in("portal")
    assert "code" in first.params, first.params
    assert "code" in browser.silent("portal").params

    # app B: the session from app A is refused, and the reason says why
    refused = browser.silent("docs")
    assert (refused.error, refused.codes) == ("login_required", ["sso_disabled", "consent_missing"])

    # signing in at app B works (not a login loop): app B gets its own session
    page = browser.follow(browser.authorize_request("docs"))
    assert page_kind(page) == "login"
    answer = browser.interact(page)
    assert "code" in answer.params, answer.params
    tokens = op.exchange("docs", answer.params["code"])
    assert op.verify_id_token(tokens["id_token"], "docs")["amr"] == ["pwd"]
    assert "code" in browser.silent("docs").params
    # one browser holds one session: it is app B's now, so app A asks again
    assert browser.silent("portal").codes[0] == "sso_disabled"


def test_a_totp_sign_in_and_prompt_login_work_for_the_apps_own_session(op: LiveOP, new_browser) -> None:
    browser: BrowserAgent = new_browser()
    page = browser.follow(browser.authorize_request("payments-web"))
    assert page_kind(page) == "login"
    page = browser.follow(browser.submit(page, {"username": "alice", "password": "wonderland"}))
    assert page_kind(page) == "otp"  # the second factor is asked for in the same sign-in
    answer = browser.interact(page)
    assert "code" in answer.params, answer.params
    tokens = op.exchange("payments-web", answer.params["code"])
    claims = op.verify_id_token(tokens["id_token"], "payments-web")
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"}
    assert "code" in browser.silent("payments-web").params

    op.clock.advance(60)
    again = browser.interact(browser.authorize_request("payments-web", prompt="login"))
    assert "code" in again.params, again.params


def test_the_backend_api_issues_tokens_for_the_apps_own_session(op: LiveOP) -> None:
    portal, payments = op.client_token("portal-backend"), op.client_token("payments-api")
    signed = op.post_json("/v1/auth/password", portal, {"username": "alice", "password": "wonderland"})
    assert signed.status_code == 200, signed.text
    assert "id_token" in signed.json()
    session_id = signed.json()["session_id"]
    again = op.post_json("/v1/auth/session/authenticate", portal, {"session_id": session_id})
    assert again.status_code == 200, again.text

    # another app refuses it, sso_disabled among the reasons (its own requirements are listed too)
    refused = op.post_json("/v1/auth/session/authenticate", payments, {"session_id": session_id})
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "login_required"
    assert body["reasons"][0]["code"] == "sso_disabled"
    assert body["reasons"][0]["source"].startswith("policies/tenant.yaml:")

    # the other app signs the user in itself: password, then TOTP, then tokens
    own = op.post_json("/v1/auth/password", payments, {"username": "alice", "password": "wonderland"})
    assert own.status_code == 200, own.text
    decision = own.json()["decision"]
    assert "sso_disabled" not in [r["code"] for r in decision["reasons"]]
    stepped = op.post_json("/v1/auth/otp", payments, {"session_id": own.json()["session_id"],
                                                  "code": op.totp("alice")})
    assert stepped.status_code == 200, stepped.text
    allowed = op.post_json("/v1/auth/session/authenticate", payments,
                           {"session_id": stepped.json()["session_id"], "scope": "openid profile"})
    assert allowed.status_code == 200, allowed.text
    claims = op.verify_id_token(allowed.json()["id_token"], "payments-api")
    assert claims["acr"] == "urn:policy-sso:loa:2"
