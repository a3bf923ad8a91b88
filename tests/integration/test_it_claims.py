"""The claims request parameter (OIDC Core §5.5) and UserInfo by GET and POST (§5.3), over real HTTP.

Alice has a custom claim (``department``) besides her standard ones. An app
asks for claims by name in the ``userinfo`` and ``id_token`` members,
essential or voluntary, with ``value``/``values``; it gets the ones the user
has, never one she lacks or one nobody defines, and the acr it asked for as
essential is the policy's to enforce.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import requests
from live_op import REDIRECTS, BrowserAgent, Callback, LiveOP, pkce_pair, with_issuer

from policy_sso.tenant import Tenant

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 renames EdDSA


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    """The demo tenant with a custom profile claim for Alice, and a phone number (a scope portal lacks)."""
    alice = demo_tenant.users["u-alice"]
    alice = replace(alice, claims={**alice.claims, "department": "Research",
                                   "phone_number": "+44 20 7946 0000"})
    users = {**demo_tenant.users, "u-alice": alice}

    def make(url: str) -> Tenant:
        base = with_issuer(demo_tenant, url)
        return Tenant(base.directory, base.settings, base.clients, users, base.policies, base.policy_files)

    return make


def exchange(op: LiveOP, code: str, verifier: str, client_id: str = "portal") -> dict[str, Any]:
    resp = op.token(client_id, grant_type="authorization_code", code=code,
                    redirect_uri=REDIRECTS[client_id], code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def sign_in_with_claims(op: LiveOP, browser: BrowserAgent, claims: dict, username: str = "alice",
                        **params: str) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    cb = browser.interact(browser.authorize_request("portal", claims=json.dumps(claims),
                                                    code_challenge=challenge, code_challenge_method="S256",
                                                    **params), username)
    assert cb.error is None, cb.params
    return exchange(op, cb.params["code"], verifier)


def userinfo(op: LiveOP, token: str) -> dict[str, Any]:
    resp = requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_discovery_lists_standard_and_custom_claims(op: LiveOP) -> None:
    doc = requests.get(f"{op.url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["claims_parameter_supported"] is True
    assert {"name", "email", "phone_number", "department", "acr", "sub"} <= set(doc["claims_supported"])


def test_userinfo_member_essential_and_voluntary(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = sign_in_with_claims(op, browser, {"userinfo": {
        "name": {"essential": True}, "department": None, "nickname": {"essential": True},
        "favourite_colour": None, "email": {"value": "someone@else.example"}}}, scope="openid")
    got = userinfo(op, tokens["access_token"])
    # scope openid alone releases only sub; the claims parameter adds what it names and Alice has
    assert got == {"sub": "u-alice", "name": "Alice Liddell", "department": "Research",
                   "email": "alice@example.com"}  # her true email, whatever value was asked for
    id_token = op.verify_id_token(tokens["id_token"], "portal", nonce="n-0S6")
    assert "name" not in id_token and "department" not in id_token  # asked for in userinfo only


def test_id_token_member_and_its_claims_survive_a_refresh(op: LiveOP, browser: BrowserAgent) -> None:
    tokens = sign_in_with_claims(op, browser, {"id_token": {
        "email": {"essential": True}, "department": {"value": "Research"}, "nickname": None,
        "iss": {"value": "http://evil.example"}, "unknown": {"values": [1, 2]}}},
        scope="openid offline_access")
    claims = op.verify_id_token(tokens["id_token"], "portal", nonce="n-0S6")
    assert claims["email"] == "alice@example.com" and claims["department"] == "Research"
    assert "nickname" not in claims and "unknown" not in claims  # she has none; nobody defines it
    assert claims["iss"] == op.url  # a protocol claim is the protocol's
    assert set(userinfo(op, tokens["access_token"])) == {"sub"}  # nothing asked of userinfo

    refreshed = op.token("portal", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    again = op.verify_id_token(refreshed["id_token"], "portal")
    assert again["email"] == "alice@example.com" and again["department"] == "Research"


def test_implicit_id_token_carries_the_requested_claims(op: LiveOP, browser: BrowserAgent) -> None:
    cb = browser.interact(browser.authorize_request(
        "portal", response_type="id_token", scope="openid",
        claims=json.dumps({"id_token": {"department": {"essential": True}, "email_verified": None}})))
    assert cb.error is None, cb.params
    claims = op.verify_id_token(cb.params["id_token"], "portal", nonce="n-0S6")
    assert claims["department"] == "Research" and claims["email_verified"] is True


def test_acr_values_voluntary_and_essential(op: LiveOP, browser: BrowserAgent) -> None:
    # Bob has a password only: his session reaches loa:1
    sign_in_with_claims(op, browser, {}, username="bob")
    loa = "urn:policy-sso:loa:{}".format
    verifier, challenge = pkce_pair()
    voluntary = browser.silent("portal", code_challenge=challenge, code_challenge_method="S256",
                               claims=json.dumps({"id_token": {"acr": {"values": [loa(2), loa(1)]}}}))
    assert voluntary.error is None, voluntary.params
    tokens = exchange(op, voluntary.params["code"], verifier)
    assert op.verify_id_token(tokens["id_token"], "portal")["acr"] == loa(1)

    essential = browser.silent("portal", claims=json.dumps(
        {"id_token": {"acr": {"essential": True, "values": [loa(2), loa(3)]}}}))
    assert essential.error is not None and "acr_insufficient" in essential.codes


def test_an_essential_acr_is_answered_with_one_of_its_values(op: LiveOP, browser: BrowserAgent) -> None:
    """OIDC Core §5.5.1.1: a session stronger than asked is answered with a value that was asked."""
    loa = "urn:policy-sso:loa:{}".format
    first = sign_in_with_claims(op, browser, {"id_token": {"acr": {"essential": True, "values": [loa(2)]}}})
    assert op.verify_id_token(first["id_token"], "portal")["acr"] == loa(2)  # alice: password and TOTP
    for asked, answered in (([loa(1)], loa(1)), ([loa(1), loa(2)], loa(2))):
        verifier, challenge = pkce_pair()
        claims = {"id_token": {"acr": {"essential": True, "values": asked}}}
        silent = browser.silent("portal", code_challenge=challenge, code_challenge_method="S256",
                                claims=json.dumps(claims))
        assert silent.error is None, silent.params
        tokens = exchange(op, silent.params["code"], verifier)
        assert op.verify_id_token(tokens["id_token"], "portal")["acr"] == answered, asked
    verifier, challenge = pkce_pair()  # voluntary: the session's own level
    silent = browser.silent("portal", code_challenge=challenge, code_challenge_method="S256",
                            claims=json.dumps({"id_token": {"acr": {"values": [loa(1)]}}}))
    tokens = exchange(op, silent.params["code"], verifier)
    assert op.verify_id_token(tokens["id_token"], "portal")["acr"] == loa(2)


def test_sub_value_names_the_only_user_to_answer_for(op: LiveOP, browser: BrowserAgent) -> None:
    sign_in_with_claims(op, browser, {})  # Alice
    other = browser.silent("portal", claims=json.dumps({"id_token": {"sub": {"value": "u-bob"}}}))
    assert other.error is not None, other.params
    _, challenge = pkce_pair()
    same = browser.silent("portal", code_challenge=challenge, code_challenge_method="S256",
                          claims=json.dumps({"id_token": {"sub": {"value": "u-alice"}}}))
    assert same.error is None, same.params


@pytest.mark.parametrize("claims", ['["userinfo"]', '{"userinfo": []}', '{"id_token": {"name": 1}}',
                                    '{"userinfo": {"name": {"essential": "yes"}}}', "{not json",
                                    '{"userinfo": {"name": {"values": "x"}}}'],
                         ids=["array", "member_array", "claim_number", "essential_string", "not_json",
                              "values_string"])
def test_malformed_claims_are_invalid_request(op: LiveOP, browser: BrowserAgent, claims: str) -> None:
    cb = browser.follow(browser.authorize_request("portal", claims=claims))
    assert cb.error == "invalid_request", getattr(cb, "params", cb)


def test_userinfo_by_post_empty_body_form_body_and_bad_schemes(op: LiveOP, browser: BrowserAgent) -> None:
    token = sign_in_with_claims(op, browser, {}, scope="openid email")["access_token"]
    # the conformance suite's call: POST, the token in the header, no body and no Content-Type
    empty = requests.post(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert "Content-Type" not in empty.request.headers
    assert empty.status_code == 200, empty.text
    assert empty.json()["email"] == "alice@example.com"
    form = requests.post(f"{op.url}/userinfo", data={"access_token": token}, timeout=10)
    assert form.status_code == 200 and form.json()["sub"] == "u-alice"  # RFC 6750 §2.2

    # RFC 6750 §3.1: an unsupported scheme is a request without authentication: 401, bare challenge
    basic = requests.get(f"{op.url}/userinfo", headers={"Authorization": "Basic dXNlcjpwYXNz"}, timeout=10)
    assert basic.status_code == 401
    assert basic.headers["WWW-Authenticate"] == 'Bearer realm="policy-sso"'
    assert basic.json()["error"] and basic.json()["error_description"]
    # RFC 6750 §3.1: a bad token gets the error in the challenge
    bad = requests.get(f"{op.url}/userinfo", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    # a DPoP presentation of a token not bound to any key is refused, with a DPoP challenge
    dpop = requests.get(f"{op.url}/userinfo", headers={"Authorization": f"DPoP {token}"}, timeout=10)
    assert dpop.status_code == 401 and dpop.headers["WWW-Authenticate"].startswith("DPoP ")
    # a body that is not a form is still refused (400), and twice the token too
    text = requests.post(f"{op.url}/userinfo", data="x", headers={"Content-Type": "text/plain",
                                                                  "Authorization": f"Bearer {token}"},
                         timeout=10)
    assert text.status_code == 400
    twice = requests.post(f"{op.url}/userinfo", data={"access_token": token},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"


def test_claims_asked_for_by_name_need_consent_to_their_scopes(op: LiveOP, browser: BrowserAgent) -> None:
    """OIDC Core §3.1.2.4: no claim is released without the user's consent, whichever way it is asked for."""
    sign_in_with_claims(op, browser, {}, username="bob", scope="openid")  # bob consents to openid only
    claims = {"userinfo": {"email": None, "name": None}, "id_token": {"department": None}}
    silent = browser.silent("portal", scope="openid", claims=json.dumps(claims))
    assert silent.error == "consent_required" and "consent_missing" in silent.codes, silent.params

    # the consent page names the scopes that release them, and the grant records them
    page = browser.follow(browser.authorize_request("portal", scope="openid", claims=json.dumps(claims)))
    assert not isinstance(page, Callback) and "consent" in page.url
    assert "(<code>email</code>)" in page.text and "(<code>profile</code>)" in page.text
    tokens = sign_in_with_claims(op, browser, claims, username="bob", scope="openid")
    # what was asked for by name, not the rest of profile
    assert userinfo(op, tokens["access_token"]) == {"sub": "u-bob", "email": "bob@example.com",
                                                    "name": "Bob Builder"}
    silent = browser.silent("portal", scope="openid", claims=json.dumps(claims))
    assert silent.error is None, silent.params  # consented now: a silent sign-in releases them


def test_a_claim_of_a_scope_the_client_may_not_ask_for_is_not_released(op: LiveOP,
                                                                        browser: BrowserAgent) -> None:
    tokens = sign_in_with_claims(op, browser, {"userinfo": {"phone_number": None, "name": None}},
                                 scope="openid")
    # Alice has a phone number, but portal may ask for openid, profile, email and offline_access only
    assert userinfo(op, tokens["access_token"]) == {"sub": "u-alice", "name": "Alice Liddell"}
