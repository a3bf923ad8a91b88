"""Why a session ended, over HTTP with a fake clock (issue 13, SPEC §2).

prompt=none and /v1/auth/session/authenticate name the limit that ended a
session (inactivity, sliding lifetime, require_login_after) or who ended it,
with the limit and the time, until the short-lived record expires.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from live_op import BrowserAgent, LiveOP, with_settings

from policy_sso.sessions.model import END_RECORD_TTL, SessionLifetime
from policy_sso.tenant import Tenant

HOUR = 3600
# short limits so the test walks past each one: idle 1h, sliding 4h, require_login_after 6h
LIFETIME = SessionLifetime(sliding=4 * HOUR, absolute=6 * HOUR, inactivity=HOUR, touch_interval=60)


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    def short_lived(url: str) -> Tenant:
        return with_settings(demo_tenant, issuer=url, lifetime=LIFETIME)
    return short_lived


def authenticate(op: LiveOP, session_id: str) -> requests.Response:
    token = op.token("portal-backend", grant_type="client_credentials").json()["access_token"]
    return requests.post(f"{op.url}/v1/auth/session/authenticate", json={"session_id": session_id},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)


def signed_in(browser: BrowserAgent) -> str:
    assert "code" in browser.sign_in("portal").params
    assert browser.session_cookie
    return browser.session_cookie


def keep_using(op: LiveOP, browser: BrowserAgent, until: int) -> None:
    """Sign in silently every half hour up to ``until``: the session is never idle for an hour."""
    while op.clock.now + HOUR // 2 <= until:
        op.clock.advance(HOUR // 2)
        assert "code" in browser.silent("portal").params, op.clock.now


def assert_ended(op: LiveOP, browser: BrowserAgent, session_id: str, reason: str, at: int,
                 limit: int | None) -> None:
    silent = browser.silent("portal")
    assert (silent.error, silent.codes) == ("login_required", [reason])
    body = authenticate(op, session_id).json()
    assert (body["error"], body["message"], body["error_description"]) == (
        "session_not_found", "Session not found", "Session not found")  # the seed's answer, kept
    assert (body["reason"], body["ended_at"], body.get("limit")) == (reason, at, limit)
    assert body["reasons"][0]["code"] == reason and body["remedy"]["action"] == "login"


def test_an_idle_session_says_inactivity_timeout(op: LiveOP, browser: BrowserAgent) -> None:
    session_id, start = signed_in(browser), op.clock.now
    op.clock.advance(HOUR + 1)
    assert_ended(op, browser, session_id, "inactivity_timeout", start + HOUR + 1, HOUR)
    assert authenticate(op, session_id).json()["reasons"][0]["source"].startswith("policies/tenant.yaml:")

    # after the record expires: plain no_session and the seed's bare answer
    op.clock.advance(END_RECORD_TTL)
    assert browser.silent("portal").codes == ["no_session"]
    assert authenticate(op, session_id).json() == {"error": "session_not_found",
                                                   "error_description": "Session not found",
                                                   "message": "Session not found"}


def test_a_session_past_its_lifetime_says_session_expired(op: LiveOP, browser: BrowserAgent) -> None:
    session_id, start = signed_in(browser), op.clock.now
    keep_using(op, browser, start + 4 * HOUR)
    op.clock.advance(start + 4 * HOUR + 1 - op.clock.now)
    assert_ended(op, browser, session_id, "session_expired", start + 4 * HOUR + 1, 4 * HOUR)


def test_a_session_past_require_login_after_says_so(op: LiveOP, browser: BrowserAgent) -> None:
    signed_in(browser)
    start = op.clock.now
    keep_using(op, browser, start + 3 * HOUR)
    # a fresh sign-in renews the sliding lifetime, not the session's age (SPEC §3)
    assert "code" in browser.interact(browser.authorize_request("portal", prompt="login")).params
    session_id = browser.session_cookie
    keep_using(op, browser, start + 6 * HOUR)
    op.clock.advance(start + 6 * HOUR + 1 - op.clock.now)
    assert_ended(op, browser, session_id, "absolute_lifetime_exceeded", start + 6 * HOUR + 1, 6 * HOUR)


def test_a_logged_out_session_says_logged_out(op: LiveOP, browser: BrowserAgent) -> None:
    session_id = signed_in(browser)
    token = op.token("portal-backend", grant_type="client_credentials").json()["access_token"]
    ended = requests.post(f"{op.url}/v1/auth/session/logout", json={"session_id": session_id},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert ended.status_code == 204
    at = op.clock.now
    op.clock.advance(30)
    assert_ended(op, browser, session_id, "logged_out", at, None)
