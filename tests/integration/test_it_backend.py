"""The backend session API over real HTTP: apps sign users in by session id (issue 5, the Transmit seed)."""

from __future__ import annotations

import json

import pytest
import requests
from live_op import BrowserAgent, LiveOP


def call(op: LiveOP, path: str, token: str | None, body: dict | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{op.url}{path}", json=body, headers=headers, timeout=10, **kwargs)


def test_a_session_from_app_a_serves_app_b_once_its_policy_is_met(op: LiveOP, new_browser) -> None:
    portal, payments = op.client_token("portal-backend"), op.client_token("payments-api")
    # app A: a password sign-in; the lenient portal policy allows it at once
    signed_in = call(op, "/v1/auth/password", portal, {"username": "alice", "password": "wonderland"})
    assert signed_in.status_code == 200, signed_in.text
    session_id = signed_in.json()["session_id"]
    assert op.verify_id_token(signed_in.json()["id_token"], "portal-backend")["amr"] == ["pwd"]

    # app B requires MFA: refused with the reasons and a remedy, not a bare login_required
    refused = call(op, "/v1/auth/session/authenticate", payments, {"session_id": session_id,
                                                                    "scope": "openid profile"})
    assert refused.status_code == 400
    body = refused.json()
    assert body["error"] == "interaction_required"
    assert {r["code"] for r in body["reasons"]} == {"mfa_required", "acr_insufficient"}
    assert body["error_description"].split() == [r["code"] for r in body["reasons"]]
    assert body["remedy"]["action"] == "step_up" and "otp" in body["remedy"]["methods"]
    assert body["remedy"]["backend"].startswith("POST /v1/auth/otp")
    assert all(r["source"].startswith("policies/payments.policy:") for r in body["reasons"])

    # the second factor moves the session to a new id (no fixation); the old id is gone
    stepped = call(op, "/v1/auth/otp", payments, {"session_id": session_id, "code": op.totp("alice")})
    assert stepped.status_code == 200, stepped.text
    new_id = stepped.json()["session_id"]
    assert new_id != session_id and stepped.json()["amr"] == ["otp", "pwd", "mfa"]
    gone = call(op, "/v1/auth/session/authenticate", payments, {"session_id": session_id})
    assert gone.json()["error"] == "session_not_found"

    allowed = call(op, "/v1/auth/session/authenticate", payments, {"session_id": new_id,
                                                                    "scope": "openid profile"})
    assert allowed.status_code == 200, allowed.text
    claims = op.verify_id_token(allowed.json()["id_token"], "payments-api")
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"}
    assert claims["acr"] == "urn:policy-sso:loa:2"

    # the same session serves prompt=none in the browser flow when the browser holds it
    browser: BrowserAgent = new_browser()
    browser.http.cookies.set("psso_session", new_id, domain="127.0.0.1", path="/")
    answer = browser.silent("portal")
    assert answer.error == "consent_required"  # the portal app (not first party) still needs consent
    browser.interact(browser.authorize_request("portal"))
    assert "code" in browser.silent("portal").params


def test_wrong_password_is_refused_without_a_session(op: LiveOP) -> None:
    response = call(op, "/v1/auth/password", op.client_token("portal-backend"),
                    {"username": "alice", "password": "not-her-password"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant" and "session_id" not in response.json()


@pytest.mark.parametrize("session_id", ["no-such-session", "x" * 43], ids=["short", "token-shaped"])
def test_unknown_session_is_the_seeds_session_not_found(op: LiveOP, session_id: str) -> None:
    response = call(op, "/v1/auth/session/authenticate", op.client_token("payments-api"),
                    {"session_id": session_id})
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["message"], body["error_description"]) == (
        "session_not_found", "Session not found", "Session not found")


def test_a_user_token_cannot_call_the_backend_api(op: LiveOP) -> None:
    portal = op.client_token("portal-backend")
    user_token = call(op, "/v1/auth/password", portal, {"username": "bob", "password": "builder"}).json()
    response = call(op, "/v1/auth/session/authenticate", user_token["access_token"],
                    {"session_id": user_token["session_id"]})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_session_logout_and_user_logout(op: LiveOP) -> None:
    portal = op.client_token("portal-backend")
    first = call(op, "/v1/auth/password", portal, {"username": "bob", "password": "builder"}).json()
    assert call(op, "/v1/auth/session/logout", portal, {"session_id": first["session_id"]}).status_code == 204
    again = call(op, "/v1/auth/session/authenticate", portal, {"session_id": first["session_id"]})
    assert again.json()["error"] == "session_not_found"

    second = call(op, "/v1/auth/password", portal, {"username": "bob", "password": "builder"}).json()
    assert call(op, "/v1/auth/logout", second["access_token"]).status_code == 204
    ended = call(op, "/v1/auth/session/authenticate", portal, {"session_id": second["session_id"]})
    assert ended.json()["error"] == "session_not_found"
    revoked = requests.get(f"{op.url}/userinfo", timeout=10,
                           headers={"Authorization": f"Bearer {second['access_token']}"})
    assert revoked.status_code == 401


def test_session_status_polling(op: LiveOP, browser: BrowserAgent) -> None:
    assert browser.get("/v1/auth/session/status", client_id="portal").json() == {"active": False}
    browser.sign_in("portal", "bob")
    status = browser.get("/v1/auth/session/status", client_id="portal")
    assert status.json()["active"] is True and status.headers["Cache-Control"] == "no-store"
    assert status.json()["expires_at"] > op.clock.now
    limit = op.tenant.settings.rate_limits["status"].requests
    answers = [browser.get("/v1/auth/session/status", client_id="portal") for _ in range(limit)]
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["error"] == "temporarily_unavailable"
    browser.get("/logout", client_id="portal")  # no hint: a confirmation page; end it from the API instead
    session_id = browser.session_cookie
    portal = op.client_token("portal-backend")
    assert call(op, "/v1/auth/session/logout", portal, {"session_id": session_id}).status_code == 204
    op.clock.advance(60)
    assert browser.get("/v1/auth/session/status", client_id="portal").json() == {
        "active": False, "reason": "logged_out", "ended_at": op.clock.now - 60}


def test_request_parameters_in_json_are_honoured_whatever_their_json_type(op: LiveOP) -> None:
    portal = op.client_token("portal-backend")
    signed_in = call(op, "/v1/auth/password", portal, {"username": "alice", "password": "wonderland"})
    session_id = signed_in.json()["session_id"]

    def authenticate(**members: object) -> requests.Response:
        return call(op, "/v1/auth/session/authenticate", portal, {"session_id": session_id, **members})

    assert authenticate().status_code == 200
    # max_age as a JSON number is the same request as the string: 0 forces a new sign-in
    for max_age in (0, "0"):
        refused = authenticate(max_age=max_age)
        assert refused.status_code == 400 and refused.json()["error"] == "login_required", refused.text
        assert [r["code"] for r in refused.json()["reasons"]] == ["max_age_exceeded"]
    # the claims parameter as the JSON object itself, or as its text: an essential acr the session lacks
    essential = {"id_token": {"acr": {"essential": True, "value": "urn:policy-sso:loa:3"}}}
    for claims in (essential, json.dumps(essential)):
        refused = authenticate(claims=claims)
        assert refused.status_code == 400, refused.text
        assert "acr_insufficient" in [r["code"] for r in refused.json()["reasons"]]
    # a value of another type is refused, never ignored
    for members in ({"max_age": -5}, {"max_age": 1.5}, {"max_age": True}, {"max_age": [0]},
                    {"acr_values": ["urn:policy-sso:loa:3"]}, {"claims": ["acr"]}):
        refused = authenticate(**members)
        assert refused.status_code == 400, (members, refused.text)
        assert refused.json()["error"] == "invalid_request"
        assert next(iter(members)) in refused.json()["error_description"]


def test_max_age_0_is_met_by_the_password_checked_in_the_same_call(op: LiveOP) -> None:
    """OIDC Core §3.1.2.1: max_age=0 asks for an active authentication, which /v1/auth/password is."""
    portal = op.client_token("portal-backend")
    fresh = call(op, "/v1/auth/password", portal, {"username": "bob", "password": "builder", "max_age": 0})
    assert fresh.status_code == 200 and "access_token" in fresh.json(), fresh.text
    # the session it made is not fresh for the next call: max_age=0 there asks for the password again
    again = call(op, "/v1/auth/session/authenticate", portal,
                 {"session_id": fresh.json()["session_id"], "max_age": 0})
    assert again.status_code == 400 and again.json()["error"] == "login_required"
    malformed = call(op, "/v1/auth/password", portal,
                     {"username": "bob", "password": "builder", "max_age": -1})
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request", malformed.text
