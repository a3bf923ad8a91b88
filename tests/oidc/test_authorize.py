"""Authorization request validation and response encoding (policy_sso.oidc.authorize)."""

from __future__ import annotations

import urllib.parse

import pytest

from policy_sso.config import Client
from policy_sso.errors import InvalidRequest
from policy_sso.oidc.authorize import (
    AuthorizationError,
    ResponseTarget,
    canonical_response_type,
    form_urlencode,
    single_valued,
    validate_authorization_request,
)

ISS = "https://op.example"
CLIENTS = {
    "web": Client("web", redirect_uris=("https://rp.example/cb", "https://rp.example/cb?x=1"),
                  response_types=("code", "id_token", "id_token token", "code id_token"),
                  scopes=("openid", "profile")),
    "spa": Client("spa", type="public", redirect_uris=("https://spa.example/cb",),
                  scopes=("openid",)),
}
CHALLENGE = "E9Melhoa2OwvFrEMTJguCQaoeKfGsO2rvTq_eggtKEc"  # RFC 7636 Appendix B


def params(**kw: str) -> dict[str, str]:
    base = {"client_id": "web", "redirect_uri": "https://rp.example/cb", "response_type": "code",
            "scope": "openid", "state": "st"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("overrides", [
    {"client_id": None}, {"client_id": "nobody"}, {"redirect_uri": None},
    {"redirect_uri": "https://rp.example/cb/"}, {"redirect_uri": "https://rp.example/CB"},
    {"redirect_uri": "https://rp.example/cb?x=2"}, {"redirect_uri": "https://evil.example/cb"},
], ids=["no_client", "unknown_client", "no_redirect_uri", "trailing_slash", "case", "other_query",
        "other_host"])
def test_unverifiable_redirect_is_shown_not_redirected(overrides: dict) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_authorization_request(params(**overrides), CLIENTS, ISS)
    assert not isinstance(info.value, AuthorizationError)


@pytest.mark.parametrize(("overrides", "error"), [
    ({"response_type": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": "code token"}, "unsupported_response_type"),
    ({"response_mode": "web_message"}, "invalid_request"),
    ({"response_type": "id_token", "nonce": "n", "response_mode": "query"}, "invalid_request"),
    ({"scope": "profile"}, "invalid_scope"),
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"response_type": "id_token"}, "invalid_request"),
    ({"code_challenge": CHALLENGE, "code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": CHALLENGE}, "invalid_request"),
    ({"request": "eyJ"}, "request_not_supported"),
    ({"request_uri": "https://x"}, "request_uri_not_supported"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"claims": "{not json"}, "invalid_request"),
], ids=["missing_response_type", "token_alone", "code_token", "bad_mode", "query_with_tokens",
        "no_openid", "scope_not_allowed", "nonce_required", "pkce_plain", "pkce_no_method",
        "request_object", "request_uri", "prompt_none_combined", "prompt_unknown", "max_age_negative",
        "claims_not_json"])
def test_errors_after_the_redirect_uri_is_verified_are_redirected(overrides: dict, error: str) -> None:
    with pytest.raises(AuthorizationError) as info:
        validate_authorization_request(params(**overrides), CLIENTS, ISS)
    response = info.value.response
    assert response.params["error"] == error
    assert response.params["state"] == "st"
    assert response.params["iss"] == ISS
    assert response.redirect_uri == "https://rp.example/cb"


def test_public_client_must_use_pkce() -> None:
    p = params(client_id="spa", redirect_uri="https://spa.example/cb")
    with pytest.raises(AuthorizationError) as info:
        validate_authorization_request(p, CLIENTS, ISS)
    assert "code_challenge" in info.value.error.description
    ok = validate_authorization_request({**p, "code_challenge": CHALLENGE,
                                         "code_challenge_method": "S256"}, CLIENTS, ISS)
    assert ok.code_challenge == CHALLENGE


def test_unauthorized_response_type_for_client() -> None:
    p = params(client_id="spa", redirect_uri="https://spa.example/cb", response_type="id_token",
               nonce="n")
    with pytest.raises(AuthorizationError) as info:
        validate_authorization_request(p, CLIENTS, ISS)
    assert info.value.error.error == "unauthorized_client"
    assert info.value.target.response_mode == "fragment"


def test_malformed_challenge_is_refused() -> None:
    def reject(challenge: str) -> None:
        raise ValueError("wrong length")

    with pytest.raises(AuthorizationError, match="malformed"):
        validate_authorization_request(params(code_challenge="abc", code_challenge_method="S256"),
                                       CLIENTS, ISS, verify_challenge=reject)


def test_valid_request_carries_policy_inputs() -> None:
    areq = validate_authorization_request(
        params(scope="openid profile", prompt="login", max_age="30", acr_values="a b",
               response_type="id_token code", nonce="n"),
        CLIENTS, ISS, resolve_hints=lambda p, c: ("u-1", None))
    assert areq.response_type == "code id_token"
    assert areq.target.response_mode == "fragment"
    assert areq.policy_request.prompt == frozenset({"login"})
    assert areq.policy_request.max_age == 30
    assert areq.policy_request.acr_values == ("a", "b")
    assert areq.policy_request.id_token_hint_sub == "u-1"
    assert areq.wants_code and areq.wants_id_token and not areq.wants_access_token


@pytest.mark.parametrize(("mode", "redirect_uri", "expected"), [
    ("query", "https://rp.example/cb", "https://rp.example/cb?code=c&state=s&iss=https%3A%2F%2Fop.example"),
    ("query", "https://rp.example/cb?x=1", "https://rp.example/cb?x=1&code=c&state=s&iss=https%3A%2F%2Fop.example"),
    ("fragment", "https://rp.example/cb", "https://rp.example/cb#code=c&state=s&iss=https%3A%2F%2Fop.example"),
    ("form_post", "https://rp.example/cb", None),
], ids=["query", "query_keeps_registered_query", "fragment", "form_post"])
def test_response_encoding_carries_iss(mode: str, redirect_uri: str, expected: str | None) -> None:
    response = ResponseTarget(redirect_uri, mode, "s", ISS).response({"code": "c"})
    assert response.location == expected
    assert response.params == {"code": "c", "state": "s", "iss": ISS}


def test_state_is_echoed_exactly() -> None:
    state = "a b&c=d#e"
    location = ResponseTarget("https://rp.example/cb", "query", state, ISS).response({}).location
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["state"] == [state]


def test_response_type_is_order_insensitive() -> None:
    assert canonical_response_type("token id_token") == "id_token token"
    assert canonical_response_type("code") == "code"
    assert canonical_response_type("none") is None


def test_repeated_parameter_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        single_valued({"scope": ["openid", "profile"]})


@pytest.mark.parametrize("params", [
    {"code": "Ab-_.~09", "state": "a b&c=d#e/€", "iss": "http://127.0.0.1:8080"},
    {"error_description": "mfa_required acr_insufficient", "": "", "k y": "+%"},
], ids=["response", "odd_names"])
def test_form_urlencode_matches_urllib(params: dict[str, str]) -> None:
    assert form_urlencode(params) == urllib.parse.urlencode(params)
