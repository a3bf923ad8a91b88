"""Step-up at the API (RFC 9470): a token's authentication context against its client's policy.

One row a case, the reason code in the id: :func:`api_decision` on the demo
tenant's policies, then ``POST /v1/auth/api-decision`` over a falcon TestClient.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from policy_sso.audit import AuditLog
from policy_sso.audit.sinks import StdoutSink
from policy_sso.oidc import tokens
from policy_sso.oidc.step_up import TOKEN_CHECKS, api_decision, token_session
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant
from server.app import create_app

DEMO = Path(__file__).resolve().parents[2] / "policies"
NOW = 1_800_000_000
ISSUER = "http://127.0.0.1:8080"
LOA2 = "urn:policy-sso:loa:2"


def claims(client_id: str = "shop", amr: tuple[str, ...] = ("pwd",), age: int | None = 60,
           scope: str = "openid payments:read", **extra: Any) -> dict[str, Any]:
    """Return an access token's claims: ``amr`` authenticated ``age`` seconds before NOW."""
    out: dict[str, Any] = {"iss": ISSUER, "aud": ISSUER, "sub": "u-alice", "client_id": client_id,
                           "scope": scope, "jti": "j-1", "iat": NOW - 10, "exp": NOW + 600}
    if age is not None:
        out.update(auth_time=NOW - age, amr=list(amr))
        if {"otp", "hwk"} & set(amr):  # as minted: the second factor's own time beside auth_time
            out["second_factor_time"] = NOW - age
    return {**out, **extra}


MFA = ("pwd", "otp", "mfa")
CHALLENGE = 'Bearer error="insufficient_user_authentication", error_description="{codes}"'

# (id, claims, what the operation needs, codes, the challenge's auth-params after error_description)
REFUSALS = [
    ("mfa_required+acr_insufficient", claims(), {"scope": "payments:write"},
     ["mfa_required", "acr_insufficient"], f'acr_values="{LOA2}", max_age="300"'),
    ("step_up_required", claims(amr=MFA, age=301), {"scope": "payments:write"},
     ["step_up_required"], f'acr_values="{LOA2}", max_age="300"'),
    # docs asks for pwd or wia: signing in again, not the MFA level (acr_values), is what meets it
    ("amr_missing", claims("docs", amr=("otp",)), {"scope": "openid"},
     ["amr_missing"], ""),
    ("mfa_required", claims("payments-web"), {"scope": "openid"},
     ["mfa_required", "acr_insufficient"], f'acr_values="{LOA2}"'),
    # require mfa (line 10) fails; the when block's mfa within 5m (line 16) applies to payments:write
    ("mfa_required-with-a-step-up-window", claims("payments-web"), {"scope": "payments:write"},
     ["mfa_required", "acr_insufficient"], f'acr_values="{LOA2}", max_age="300"'),
    ("max_age_exceeded-policy", claims("payments-web", amr=MFA, age=8 * 3600 + 1), {"scope": "openid"},
     ["max_age_exceeded"], 'max_age="28800"'),
    ("max_age_exceeded-operation", claims(age=301), {"scope": "payments:read", "max_age": 300},
     ["max_age_exceeded"], 'max_age="300"'),
    ("acr_insufficient-operation", claims(), {"scope": "payments:read", "acr_values": [LOA2]},
     ["acr_insufficient"], f'acr_values="{LOA2}"'),
    ("no_session-client-credentials", claims("payments-api", age=None, sub="payments-api"),
     {"scope": "payments:read"}, ["no_session"], ""),
]


@pytest.mark.parametrize(("token", "needs", "codes", "params"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_a_refusal_names_every_reason_and_the_rfc9470_challenge(demo: Tenant, token, needs, codes,
                                                                params) -> None:
    answer = api_decision(demo, token, now=NOW, **needs)
    assert (answer.allow, answer.error, answer.status) == (False, "insufficient_user_authentication", 401)
    assert [r.code for r in answer.reasons] == codes
    expected = CHALLENGE.format(codes=" ".join(codes)) + (f", {params}" if params else "")
    assert answer.www_authenticate == expected
    body = answer.to_json()
    assert body["reasons"][0]["source"].startswith("policies/")  # the policy line behind it
    assert body["remedy"]["action"] in ("step_up", "login")


ALLOWED = [
    ("allow-password-reads", claims(), {"scope": "payments:read"}),
    ("allow-fresh-second-factor-exactly-5m", claims(amr=MFA, age=300, scope="openid payments:write"),
     {"scope": "payments:write"}),
    # a session limit is not a token's: a refreshed token keeps its 15-day-old authentication
    ("allow-session-lifetime-not-applied", claims("portal", age=15 * 86400, scope="openid"),
     {"scope": "openid"}),
    # consent was given when the token was issued: payments-web's policy requires it of sessions
    ("allow-consent-not-applied", claims("payments-web", amr=MFA, scope="openid payments:read"),
     {"scope": "payments:read"}),
    ("allow-resource-is-the-audience", claims(), {"resource": ISSUER}),
]


@pytest.mark.parametrize(("token", "needs"), [r[1:] for r in ALLOWED], ids=[r[0] for r in ALLOWED])
def test_allow(demo: Tenant, token, needs) -> None:
    answer = api_decision(demo, token, now=NOW, **needs)
    assert answer.allow, answer.to_json()
    assert answer.to_json() == {"allow": True}


def test_the_token_evaluator_keeps_only_the_token_checks(demo: Tenant) -> None:
    session_table = {g.check.reason for g in demo.evaluator("payments-web").checks}
    token_table = {g.check.reason for g in demo.token_evaluator("payments-web").checks}
    assert token_table == session_table & TOKEN_CHECKS
    assert {"inactivity_timeout", "consent_missing", "session_expired"} <= session_table - token_table


def test_a_token_is_one_authentication_at_auth_time(demo: Tenant) -> None:
    session = token_session(claims(amr=MFA, age=120), NOW)
    assert session is not None
    assert session.methods == {"pwd": NOW - 120, "otp": NOW - 120}  # mfa is derived, not an event
    assert (session.mfa, session.second_factor_time, session.auth_time) == (True, NOW - 120, NOW - 120)
    assert token_session(claims(age=None), NOW) is None


def test_enough_authentication_but_a_missing_scope_is_insufficient_scope(demo: Tenant) -> None:
    answer = api_decision(demo, claims(amr=MFA), now=NOW, scope="payments:write")
    assert (answer.allow, answer.error, answer.status) == (False, "insufficient_scope", 403)
    assert answer.www_authenticate == ('Bearer error="insufficient_scope", error_description="the access '
                                       'token lacks the scope payments:write", scope="payments:write"')
    assert answer.to_json()["remedy"]["params"] == {"scope": "openid payments:read payments:write"}


def test_a_step_up_remedy_asks_for_the_missing_scope_too(demo: Tenant) -> None:
    remedy = api_decision(demo, claims(), now=NOW, scope="payments:write").to_json()["remedy"]
    assert remedy["params"]["scope"] == "openid payments:read payments:write"
    assert remedy["params"]["acr_values"] == LOA2
    assert "otp" in remedy["methods"]


UNAVAILABLE = [
    # portal-backend's clients.yaml scopes are openid profile email: a retry asking for
    # payments:write would be refused invalid_scope
    ("insufficient_scope-client-may-not-ask", claims("portal-backend", scope="openid profile"),
     "payments:write", "insufficient_scope", "payments-api, payments-web, shop"),
    # docs's policy wants a password too (amr_missing), but stepping up cannot bring payments:write
    ("amr_missing-client-may-not-ask", claims("docs", amr=("otp",), scope="openid"),
     "payments:write", "insufficient_user_authentication", "payments-api, payments-web, shop"),
    ("insufficient_scope-no-client-may-ask", claims("portal-backend", scope="openid profile"),
     "ledger:close", "insufficient_scope", "no client may ask for it"),
]


@pytest.mark.parametrize(("token", "scope", "error", "who"), [r[1:] for r in UNAVAILABLE],
                         ids=[r[0] for r in UNAVAILABLE])
def test_a_scope_the_client_may_not_ask_for_is_no_retry(demo: Tenant, token, scope, error, who) -> None:
    answer = api_decision(demo, token, now=NOW, scope=scope)
    assert answer.error == error
    remedy = answer.to_json()["remedy"]
    assert (remedy["action"], remedy["params"], remedy["scopes"]) == ("unavailable", {}, [scope])
    assert remedy["message"].startswith(f"{token['client_id']} may not ask for scope {scope} ")
    assert who in remedy["message"] and "clients.yaml" in remedy["message"]


def test_a_retry_asks_only_for_scopes_the_client_may_ask_for(demo: Tenant) -> None:
    # a scope the token holds but clients.yaml no longer allows would make the retry invalid_scope
    token = claims(amr=MFA, scope="openid payments:read docs:read")
    remedy = api_decision(demo, token, now=NOW, scope="payments:write").to_json()["remedy"]
    assert remedy["params"] == {"scope": "openid payments:read payments:write"}


def test_a_dpop_bound_token_is_challenged_with_the_dpop_scheme(demo: Tenant) -> None:
    answer = api_decision(demo, claims(cnf={"jkt": "abc"}), now=NOW, scope="payments:write")
    algs = " ".join(demo.settings.dpop.algorithms)
    assert answer.www_authenticate == (f'DPoP algs="{algs}", error="insufficient_user_authentication", '
                                       f'error_description="mfa_required acr_insufficient", '
                                       f'acr_values="{LOA2}", max_age="300"')


@pytest.mark.parametrize(("token", "needs", "description"), [
    (claims("nobody"), {"scope": "openid"}, "the access token's client is not registered here"),
    (claims(), {"resource": "https://payments.example"}, "the access token is not meant for this resource"),
], ids=["invalid_token-unknown-client", "invalid_token-other-resource"])
def test_invalid_token(demo: Tenant, token, needs, description) -> None:
    answer = api_decision(demo, token, now=NOW, **needs)
    assert (answer.allow, answer.error, answer.status) == (False, "invalid_token", 401)
    assert answer.www_authenticate == f'Bearer error="invalid_token", error_description="{description}"'


# --- over HTTP ------------------------------------------------------------------------

def basic(client_id: str) -> dict[str, str]:
    secret = (DEMO / "secrets" / f"{client_id}.secret").read_text().strip()
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
def http(demo: Tenant, ring: Any) -> falcon.testing.TestClient:
    store = open_store("memory://", demo.settings.lifetime)
    return falcon.testing.TestClient(create_app(demo, store, ring, clock=lambda: NOW))


def signed(ring: Any, token: dict[str, Any]) -> str:
    return tokens.mint_access_token(
        ring, issuer=ISSUER, subject=token["sub"], client_id=token["client_id"], scope=token["scope"],
        now=NOW - 10, lifetime=600, jti="j-1", auth_time=token.get("auth_time"), amr=token.get("amr"))


def test_over_http_a_password_token_is_refused_for_payments_write(http, ring) -> None:
    token = signed(ring, claims())
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": token, "scope": "payments:write"})
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert body["allow"] is False
    assert body["www_authenticate"] == (CHALLENGE.format(codes="mfa_required acr_insufficient")
                                        + f', acr_values="{LOA2}", max_age="300"')
    assert [r["code"] for r in body["reasons"]] == ["mfa_required", "acr_insufficient"]
    assert resp.headers["Cache-Control"] == "no-store"
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": token, "scope": "payments:read"})
    assert resp.json == {"allow": True}


def test_over_http_the_remedy_does_not_send_a_client_to_a_refused_retry(http, ring) -> None:
    token = signed(ring, claims("portal-backend", scope="openid profile"))
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": token, "scope": "payments:write"})
    assert resp.status_code == 200, resp.text
    assert resp.json["error"] == "insufficient_scope"
    assert resp.json["remedy"]["action"] == "unavailable" and resp.json["remedy"]["params"] == {}
    assert "Retry" not in resp.json["remedy"]["message"]


@pytest.mark.parametrize(("headers", "body", "status", "error"), [
    ({}, {"token": "x", "scope": "openid"}, 401, "invalid_client"),
    ({}, {"client_id": "spa", "token": "x", "scope": "openid"}, 401, "invalid_client"),
    (None, {"scope": "openid"}, 400, "invalid_request"),
    (None, {"token": "x"}, 400, "invalid_request"),
    (None, {"token": "x", "scope": ["openid"]}, 400, "invalid_request"),
    (None, {"token": "x", "scope": "openid", "max_age": "-1"}, 400, "invalid_request"),
], ids=["no-client-auth", "public-client", "no-token", "no-scope-or-resource", "scope-not-a-string",
        "bad-max_age"])
def test_over_http_a_malformed_question_is_a_json_error(http, headers, body, status, error) -> None:
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api") if headers is None
                              else headers, json=body)
    assert resp.status_code == status, resp.text
    assert resp.json["error"] == error and resp.json["error_description"]


def test_over_http_each_answer_is_an_audit_event(demo: Tenant, ring: Any) -> None:
    out = io.StringIO()
    audit = AuditLog([StdoutSink(out)])
    store = open_store("memory://", demo.settings.lifetime)
    http = falcon.testing.TestClient(create_app(demo, store, ring, clock=lambda: NOW, audit=audit))
    for token in (signed(ring, claims()), "not.a.token"):
        http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                           json={"token": token, "scope": "payments:write"})
    audit.close()
    refused, invalid = (json.loads(line) for line in out.getvalue().splitlines())
    assert (refused["type"], refused["outcome"], refused["client"], refused["subject"]) == (
        "api.decision", "login_required", "shop", "u-alice")
    assert refused["details"] == {"resource_server": "payments-api", "scopes": ["payments:write"],
                                  "policy": "shop"}
    assert [r["code"] for r in refused["reasons"]] == ["mfa_required", "acr_insufficient"]
    assert (invalid["outcome"], invalid["details"]) == ("invalid_token", {"resource_server": "payments-api"})


def test_over_http_client_secret_in_the_body_authenticates_too(http, ring) -> None:
    secret = (DEMO / "secrets" / "payments-api.secret").read_text().strip()
    resp = http.simulate_post("/v1/auth/api-decision", json={
        "client_id": "payments-api", "client_secret": secret, "token": signed(ring, claims()),
        "scope": "payments:read"})
    assert resp.json == {"allow": True}


def test_over_http_an_invalid_token_is_answered_not_failed(http) -> None:
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": "not.a.token", "scope": "payments:read"})
    assert resp.status_code == 200
    assert resp.json["allow"] is False and resp.json["error"] == "invalid_token"
    assert resp.json["www_authenticate"].startswith('Bearer error="invalid_token"')
    assert resp.json["status"] == 401


def test_what_the_resource_server_sent_cannot_break_out_of_the_challenge(demo: Tenant) -> None:
    hostile = 'payments:read x"\r\nSet-Cookie: a=b'
    step_up = api_decision(demo, claims(), now=NOW, scope=hostile, acr_values=['x"\\', LOA2])
    scope = api_decision(demo, claims(amr=MFA), now=NOW, scope=hostile)
    assert (step_up.error, scope.error) == ("insufficient_user_authentication", "insufficient_scope")
    for answer in (step_up, scope):
        assert "\r" not in answer.www_authenticate and "\n" not in answer.www_authenticate
        assert answer.www_authenticate.count('"') % 2 == 0 and "\\" not in answer.www_authenticate


def test_past_ascii_a_challenge_value_becomes_a_question_mark(demo: Tenant) -> None:
    answer = api_decision(demo, claims(amr=MFA), now=NOW, scope="payments:read caf\u00e9 \U0001f600 \x7f")
    assert answer.error == "insufficient_scope"
    assert answer.www_authenticate.isascii() and 'scope="caf? ? ?"' in answer.www_authenticate


@pytest.mark.parametrize(("presented", "answer"), [
    ({}, "not as Bearer"),
    ({"token_type": "Bearer"}, "not as Bearer"),
    ({"token_type": "DPoP"}, "another key"),
    ({"token_type": "DPoP", "dpop_jkt": "someone-else"}, "another key"),
    ({"token_type": "DPoP", "dpop_jkt": "jkt-of-the-proof"}, None),
], ids=["no-token_type", "bearer", "dpop-without-jkt", "dpop-other-key", "dpop-its-key"])
def test_over_http_a_dpop_bound_token_needs_the_dpop_scheme_and_its_key(http, ring, demo: Tenant, presented,
                                                                      answer) -> None:
    """RFC 9449 §7.1: a stolen bound token shown to a resource server as Bearer is refused here too."""
    token = tokens.mint_access_token(ring, issuer=ISSUER, subject="u-alice", client_id="shop",
                                     scope="openid payments:read", now=NOW - 10, lifetime=600, jti="j-2",
                                     auth_time=NOW - 60, amr=["pwd"], jkt="jkt-of-the-proof")
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": token, "scope": "payments:read", **presented})
    assert resp.status_code == 200, resp.text
    if answer is None:
        assert resp.json == {"allow": True}
        return
    assert (resp.json["allow"], resp.json["error"]) == (False, "invalid_token")
    assert answer in resp.json["www_authenticate"]
    assert resp.json["www_authenticate"].startswith(f'DPoP algs="{" ".join(demo.settings.dpop.algorithms)}"')


def test_over_http_token_type_is_bearer_or_dpop(http, ring) -> None:
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={"token": signed(ring, claims()), "scope": "openid", "token_type": "MAC"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"


@pytest.mark.parametrize(("address", "codes"), [
    (None, ["mfa_required"]),  # unknown: the block applies
    ("10.1.2.3", []),  # in the office: one factor is enough
    ("203.0.113.9", ["mfa_required"]),
])
def test_the_resource_server_may_say_where_its_user_is(address: str | None, codes: list[str]) -> None:
    from policy_sso.networks import client_ip

    tenant = load_tenant(Path(__file__).resolve().parents[1] / "cases" / "tenant-networks")
    token = claims("office-app", scope="openid")
    answer = api_decision(tenant, token, now=NOW, scope="openid", client_ip=client_ip(address))
    assert answer.allow is (codes == [])
    assert [r.code for r in answer.reasons] == codes


def test_over_http_client_ip_must_be_an_address(http, ring) -> None:
    question = {"token": signed(ring, claims()), "scope": "openid"}
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={**question, "client_ip": "office"})
    assert resp.status_code == 400 and "client_ip" in resp.json["error_description"]
    resp = http.simulate_post("/v1/auth/api-decision", headers=basic("payments-api"),
                              json={**question, "client_ip": "10.1.2.3"})
    assert resp.status_code == 200 and resp.json == {"allow": True}


def test_step_up_freshness_is_judged_by_the_second_factors_own_time(demo: Tenant) -> None:
    """A password re-entered after the code does not make the code fresh (attack review)."""
    needs = {"scope": "payments:write"}
    fresh = claims(amr=MFA, age=60, scope="openid payments:read payments:write")
    assert api_decision(demo, fresh, now=NOW, **needs).allow
    stale_code = {**fresh, "second_factor_time": NOW - 333}  # the password 60 s ago, the code 333
    answer = api_decision(demo, stale_code, now=NOW, **needs)
    assert not answer.allow and [r.code for r in answer.reasons] == ["step_up_required"]
    # a token that does not say when its second factor was presented fails closed
    unsaid = {k: v for k, v in fresh.items() if k != "second_factor_time"}
    answer = api_decision(demo, unsaid, now=NOW, **needs)
    assert not answer.allow and [r.code for r in answer.reasons] == ["step_up_required"]
    # a time after auth_time is not believed either
    assert not api_decision(demo, {**fresh, "second_factor_time": NOW}, now=NOW, **needs).allow
