"""Ending sessions from every entry point: silent auth fails afterwards and the clients hear of it.

Each client of the session that registered a back-channel URI receives a
logout token that verifies against /jwks and names the right sid and sub
(OIDC Back-Channel Logout 1.0); a receiver that is slow never delays the
logout response.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from backend_support import LogoutReceiver, verified_logout_token
from live_op import DEMO, LiveOP, with_issuer

from policy_sso.oidc.hint_token import mint_hint_token
from policy_sso.tenant import Tenant

ADMIN = "admin-token-for-tests-0123456789"


@pytest.fixture
def tenant_for(demo_tenant: Tenant, receiver: LogoutReceiver,
               monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Tenant]:
    """The demo tenant whose back-channel clients point at the test's receiver."""
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    listening = ("portal-backend", "payments-web", "intranet-bridge", "portal")
    clients = {cid: replace(c, backchannel_logout_uri=receiver.url) if cid in listening else c
               for cid, c in demo_tenant.clients.items()}
    return lambda url: with_issuer(replace(demo_tenant, clients=clients), url)


def backend_session(op: LiveOP, username: str = "bob") -> dict:
    portal = op.client_token("portal-backend")
    password = {"bob": "builder", "alice": "wonderland"}[username]
    body = op.post_json("/v1/auth/password", portal, {"username": username, "password": password})
    assert body.status_code == 200, body.text
    return {**body.json(), "client_token": portal}


def assert_notified(op: LiveOP, receiver: LogoutReceiver, subject: str, count: int = 1) -> list[dict]:
    tokens = receiver.wait_for(count)
    assert len(tokens) == count, f"{len(tokens)} logout tokens arrived, expected {count}"
    claims = [verified_logout_token(op.url, t) for t in tokens]
    assert all(c["sub"] == subject and c["sid"] and c["iss"] == op.url for c in claims)
    return claims


def test_backend_session_logout(op: LiveOP, receiver: LogoutReceiver) -> None:
    signed = backend_session(op)
    sid = op.store.get_session(signed["session_id"], op.clock.now).clients["portal-backend"].sid
    assert op.post_json("/v1/auth/session/logout", signed["client_token"],
               {"session_id": signed["session_id"]}).status_code == 204
    assert op.post_json("/v1/auth/session/authenticate", signed["client_token"],
               {"session_id": signed["session_id"]}).json()["error"] == "session_not_found"
    (claims,) = assert_notified(op, receiver, "u-bob")
    assert claims["sid"] == sid and claims["aud"] == "portal-backend"


def test_user_logout_with_the_users_access_token(op: LiveOP, receiver: LogoutReceiver) -> None:
    signed = backend_session(op)
    assert op.post_json("/v1/auth/logout", signed["access_token"]).status_code == 204
    assert op.post_json("/v1/auth/session/authenticate", signed["client_token"],
               {"session_id": signed["session_id"]}).json()["error"] == "session_not_found"
    assert_notified(op, receiver, "u-bob")


def test_admin_ends_every_session_of_a_user(op: LiveOP, receiver: LogoutReceiver) -> None:
    sessions = [backend_session(op) for _ in range(2)]
    other = backend_session(op, "alice")
    assert op.post_json("/admin/v1/users/u-bob/sessions/logout", "wrong-token").status_code == 401
    response = op.post_json("/admin/v1/users/u-bob/sessions/logout", ADMIN)
    assert response.status_code == 200 and response.json()["sessions_ended"] == 2
    for signed in sessions:
        assert op.post_json("/v1/auth/session/authenticate", signed["client_token"],
                   {"session_id": signed["session_id"]}).json()["error"] == "session_not_found"
    assert op.post_json("/v1/auth/session/authenticate", other["client_token"],
               {"session_id": other["session_id"]}).status_code == 200
    assert_notified(op, receiver, "u-bob", 2)


def test_rp_initiated_logout_in_the_browser(op: LiveOP, receiver: LogoutReceiver, browser) -> None:
    code = browser.sign_in("portal", "bob").params["code"]
    id_token = op.token("portal", grant_type="authorization_code", code=code,
                        redirect_uri="http://127.0.0.1:9001/callback").json()["id_token"]
    browser.get("/logout", id_token_hint=id_token)
    assert browser.silent("portal").error == "login_required"
    assert_notified(op, receiver, "u-bob")


def test_a_slow_receiver_does_not_delay_logout(op: LiveOP, receiver: LogoutReceiver) -> None:
    receiver.delay = 3.0
    signed = backend_session(op)
    started = time.perf_counter()
    assert op.post_json("/v1/auth/session/logout", signed["client_token"],
               {"session_id": signed["session_id"]}).status_code == 204
    assert time.perf_counter() - started < 1.0
    assert_notified(op, receiver, "u-bob")


def test_a_hint_for_another_user_ends_the_current_session_first(op: LiveOP, receiver: LogoutReceiver,
                                                                 browser) -> None:
    browser.sign_in("portal", "bob")
    old = browser.session_cookie
    key = (DEMO / "secrets" / "intranet-hint.key").read_bytes().strip()
    hint = mint_hint_token(key, "HS256", issuer="https://intranet.example.com", audience=op.url,
                           subject="u-alice", lifetime=60, now=op.clock.now)
    answer = browser.interact(browser.authorize_request("intranet-bridge", login_hint_token=hint), "alice")
    assert "code" in answer.params
    assert op.store.get_session(old, op.clock.now) is None
    assert browser.session_cookie != old
    assert_notified(op, receiver, "u-bob")
