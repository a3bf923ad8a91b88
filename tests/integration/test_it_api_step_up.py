"""Step-up at the API over HTTP (issue 19, acceptance 3; RFC 9470).

Alice signs in at the shop with her password: enough to shop and read
payments. Six minutes later she pays: the payments API asks
``/v1/auth/api-decision`` about her token and hears the RFC 9470 challenge.
The shop retries at /authorize with the challenge's ``acr_values`` and
``max_age`` (and the scope the remedy names): password again, then her TOTP
code; the new token passes, and the introspection of it shows the stronger
authentication behind it.
"""

from __future__ import annotations

import re

import requests
from live_op import BrowserAgent, LiveOP, page_kind

LOA2 = "urn:policy-sso:loa:2"


def ask(op: LiveOP, token: str, **needs: str) -> dict:
    """Return the answer the payments API (a confidential client) gets about ``token``."""
    resp = requests.post(f"{op.url}/v1/auth/api-decision", json={"token": token, **needs},
                         auth=("payments-api", op.secret("payments-api")), timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def challenge_params(challenge: str) -> dict[str, str]:
    """Return the auth-params of a WWW-Authenticate challenge (RFC 9110 §11.2, quoted values)."""
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


def introspect(op: LiveOP, token: str) -> dict:
    resp = op.post_as("payments-api", "/introspect", token=token)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_password_token_is_refused_for_payments_write_and_the_challenged_retry_passes(
        op: LiveOP, browser: BrowserAgent) -> None:
    signed_in = browser.sign_in("shop", scope="openid payments:read")
    first = op.exchange("shop", signed_in.params["code"])["access_token"]
    assert introspect(op, first)["amr"] == ["pwd"]
    assert ask(op, first, scope="payments:read") == {"allow": True}

    op.clock.advance(360)
    refused = ask(op, first, scope="payments:write")
    assert refused["allow"] is False and refused["status"] == 401
    assert refused["www_authenticate"] == (
        'Bearer error="insufficient_user_authentication", error_description="mfa_required acr_insufficient", '
        f'acr_values="{LOA2}", max_age="300"')
    assert [r["code"] for r in refused["reasons"]] == ["mfa_required", "acr_insufficient"]
    assert all(r["source"].startswith("policies/shop.policy:") for r in refused["reasons"])
    params = challenge_params(refused["www_authenticate"])

    # the shop's retry: the challenge's acr_values and max_age, and the scope the remedy names
    retry = browser.follow(browser.authorize_request(
        "shop", scope=refused["remedy"]["params"]["scope"], acr_values=params["acr_values"],
        max_age=params["max_age"]))
    assert page_kind(retry) == "login"  # signed in 6 minutes ago: max_age=300 asks for the password again
    answer = browser.interact(retry)  # password, then the TOTP code loa:2 and mfa within 5m need
    assert "code" in answer.params, answer.params
    second = op.exchange("shop", answer.params["code"])["access_token"]
    assert ask(op, second, scope="payments:write") == {"allow": True}
    described = introspect(op, second)
    assert (described["acr"], described["auth_time"]) == (LOA2, op.clock.now)
    assert {"pwd", "otp", "mfa"} <= set(described["amr"])

    # the step-up window is 5 minutes: after that the same token is challenged again
    op.clock.advance(301)
    stale = ask(op, second, scope="payments:write")
    assert [r["code"] for r in stale["reasons"]] == ["step_up_required"]
    assert challenge_params(stale["www_authenticate"])["max_age"] == "300"


def test_a_refreshed_token_keeps_the_authentication_it_came_from(op: LiveOP, browser: BrowserAgent) -> None:
    signed_in = browser.sign_in("shop", scope="openid offline_access payments:read")
    issued = op.exchange("shop", signed_in.params["code"])
    op.clock.advance(120)
    resp = op.token("shop", grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert resp.status_code == 200, resp.text
    before, after = introspect(op, issued["access_token"]), introspect(op, resp.json()["access_token"])
    assert after["iat"] == before["iat"] + 120
    context = ("acr", "amr", "auth_time")
    assert {k: after[k] for k in context} == {k: before[k] for k in context}
    # so a refresh is no way around the step-up: the refreshed token is refused like the first
    refused = ask(op, resp.json()["access_token"], scope="payments:write")
    assert [r["code"] for r in refused["reasons"]] == ["mfa_required", "acr_insufficient"]


def test_an_unauthenticated_caller_and_a_revoked_token(op: LiveOP, browser: BrowserAgent) -> None:
    code = browser.sign_in("shop", scope="openid payments:read").params["code"]
    token = op.exchange("shop", code)["access_token"]
    resp = requests.post(f"{op.url}/v1/auth/api-decision", json={"token": token, "scope": "payments:read"},
                         timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    assert op.post_as("shop", "/revoke", token=token).status_code == 200
    revoked = ask(op, token, scope="payments:read")
    assert (revoked["allow"], revoked["error"]) == (False, "invalid_token")
    assert revoked["www_authenticate"].startswith('Bearer error="invalid_token"')


def test_a_password_entered_again_does_not_refresh_the_second_factor(op: LiveOP,
                                                                    browser: BrowserAgent) -> None:
    """The API and /authorize agree on ``require mfa within 5m`` after a password-only re-authentication."""
    scope = "openid payments:read payments:write"
    first = browser.sign_in("shop", scope=scope)  # password and TOTP code at T0
    assert "code" in first.params, first.params
    op.clock.advance(261)
    # a fresh sign-in where a password is enough (a fresh one counts its own factors only)
    again = browser.follow(browser.authorize_request("shop", scope="openid payments:read", prompt="login"))
    assert page_kind(again) == "login"
    assert "code" in browser.interact(again, otp=False).params  # the password only
    answer = browser.silent("shop", scope=scope)  # the session's code is 261 s old, within 5 minutes
    assert "code" in answer.params, answer.params
    token = op.exchange("shop", answer.params["code"])["access_token"]
    assert ask(op, token, scope="payments:write") == {"allow": True}

    op.clock.advance(72)  # the password 72 s ago, the code 333 s ago
    stale = ask(op, token, scope="payments:write")
    assert [r["code"] for r in stale["reasons"]] == ["step_up_required"], stale
    silent = browser.silent("shop", scope=scope)
    assert "step_up_required" in silent.codes, silent.params
