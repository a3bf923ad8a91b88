"""Authorization request validation and response encoding (policy_sso.oidc.authorize)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.config import Client
from policy_sso.errors import InvalidRequest
from policy_sso.oidc import pkce
from policy_sso.oidc.authorize import (
    AuthorizationError,
    RequestShapes,
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
    ({"response_type": "id_token"}, "invalid_request"),
    ({"code_challenge": CHALLENGE, "code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": CHALLENGE}, "invalid_request"),
    ({"code_challenge_method": "S256"}, "invalid_request"),  # RFC 7636 §4.3: a method binds nothing alone
    ({"request": "eyJ"}, "request_not_supported"),
    ({"request_uri": "https://x"}, "request_uri_not_supported"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"max_age": "-1"}, "invalid_request"),
    ({"claims": "{not json"}, "invalid_request"),
], ids=["missing_response_type", "token_alone", "code_token", "bad_mode", "query_with_tokens",
        "no_openid", "nonce_required", "pkce_plain", "pkce_no_method", "pkce_method_alone",
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


def test_a_scope_of_another_client_is_refused_and_one_no_client_has_is_ignored() -> None:
    spa = params(client_id="spa", redirect_uri="https://spa.example/cb", scope="openid profile",
                 code_challenge=CHALLENGE, code_challenge_method="S256")
    with pytest.raises(AuthorizationError) as info:  # profile is web's scope, not spa's
        validate_authorization_request(spa, CLIENTS, ISS)
    assert info.value.response.params["error"] == "invalid_scope"
    ok = validate_authorization_request(params(scope="openid admin profile"), CLIENTS, ISS)
    assert ok.scopes == ("openid", "profile")  # OIDC Core §3.1.2.1: not understood, ignored
    assert ok.policy_request.scopes == frozenset({"openid", "profile"})


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


# --- request shapes: validated once, completed per request -----------------------------------

def outcome(validate: Callable[[], object]) -> object:
    """Return what validation gives: the request, or the error with everything it would send."""
    try:
        return validate()
    except AuthorizationError as err:
        return ("redirected", err.error.error, err.error.description, err.target)
    except InvalidRequest as err:
        return ("shown", err.error, err.description)


POOL = {
    "client_id": [None, "web", "spa", "nobody"],
    "redirect_uri": [None, "https://rp.example/cb", "https://rp.example/cb?x=1", "https://spa.example/cb"],
    "response_type": [None, "code", "id_token", "code id_token", "id_token code", "token"],
    "response_mode": [None, "query", "fragment", "form_post", "web_message"],
    "scope": [None, "openid", "openid profile", "profile", "openid openid profile"],
    "prompt": [None, "none", "login consent", "none login"],
    "max_age": [None, "", "0", "300", "-1"],
    "acr_values": [None, "urn:a urn:b"],
    "claims": [None, '{"id_token": {"acr": {"essential": true, "value": "urn:a"}}}', "{bad"],
    "code_challenge_method": [None, "S256", "plain"],
    "code_challenge": [None, "", CHALLENGE, "short", "x" * 43 + "!"],
    "nonce": [None, "", "n1", "n2"],
    "state": [None, "s1", "s2"],
    "login_hint": [None, None, None, "alice"],
}


PER_REQUEST = ("code_challenge", "nonce", "state")
WEB = {"client_id": "web", "redirect_uri": "https://rp.example/cb", "scope": "openid"}
VALID_SHAPES = [
    {**WEB, "response_type": "code"},
    {**WEB, "response_type": "code", "code_challenge_method": "S256"},
    {**WEB, "response_type": "id_token"},
    {**WEB, "response_type": "code id_token", "response_mode": "form_post", "scope": "openid profile"},
    {**WEB, "response_type": "code", "prompt": "none", "max_age": "0", "claims": POOL["claims"][1]},
    {"client_id": "spa", "redirect_uri": "https://spa.example/cb", "response_type": "code", "scope": "openid",
     "code_challenge_method": "S256"},
]
# changes to a valid shape: none, or one parameter set to any value of the pool (often an invalid one)
CHANGES = st.one_of(st.just({}), st.sampled_from(
    [{k: v} for k, vs in POOL.items() if k not in PER_REQUEST for v in vs]))
FRESH = st.tuples(st.integers(0, 2), *(st.sampled_from(POOL[k]) for k in PER_REQUEST))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID_SHAPES), st.lists(CHANGES, min_size=1, max_size=3),
       st.lists(FRESH, min_size=1, max_size=12))
def test_shapes_give_exactly_what_full_validation_gives(base: dict, changes: list[dict],
                                                        requests: list[tuple]) -> None:
    # shapes one parameter apart, each sent again and again with other state, nonce and challenge
    shapes = RequestShapes(CLIENTS, ISS)
    check = lambda c: pkce.validate_challenge(c, "S256")  # noqa: E731
    for pick, *fresh in requests:
        raw = {**base, **changes[pick % len(changes)], **dict(zip(PER_REQUEST, fresh, strict=True))}
        p = {k: v for k, v in raw.items() if v is not None}
        cached = outcome(lambda p=p: shapes.validate(p, verify_challenge=check))
        full = outcome(lambda p=p: validate_authorization_request(p, CLIENTS, ISS, verify_challenge=check))
        assert cached == full, p


@pytest.mark.parametrize("base", VALID_SHAPES)
def test_every_parameter_change_is_a_new_shape(base: dict) -> None:
    # each valid shape, then the same with one parameter changed, then the shape again: each answer
    # must be the full validation's, so a parameter left out of the shape key shows up here
    shapes = RequestShapes(CLIENTS, ISS)
    check = lambda c: pkce.validate_challenge(c, "S256")  # noqa: E731
    for key, values in POOL.items():
        for value in values:
            for raw in (base, {**base, key: value}, base):
                p = {k: v for k, v in {**raw, "state": "s"}.items() if v is not None}
                assert outcome(lambda p=p: shapes.validate(p, verify_challenge=check)) == outcome(
                    lambda p=p: validate_authorization_request(p, CLIENTS, ISS, verify_challenge=check)), p


def test_a_shape_is_reused_with_this_requests_state_nonce_and_challenge() -> None:
    shapes = RequestShapes(CLIENTS, ISS)
    base = params(client_id="spa", redirect_uri="https://spa.example/cb", code_challenge_method="S256")
    first = shapes.validate({**base, "state": "a", "nonce": "n1", "code_challenge": CHALLENGE})
    other = "x" * 43
    second = shapes.validate({**base, "state": "b", "nonce": "n2", "code_challenge": other},
                             verify_challenge=lambda c: pkce.validate_challenge(c, "S256"))
    assert second.client is first.client and second.policy_request is first.policy_request
    assert (second.target.state, second.nonce, second.code_challenge) == ("b", "n2", other)
    with pytest.raises(AuthorizationError) as info:
        shapes.validate({**base, "state": "c", "code_challenge": "short"},
                        verify_challenge=lambda c: pkce.validate_challenge(c, "S256"))
    assert (info.value.error.error, info.value.target.state) == ("invalid_request", "c")


def test_the_shape_cache_is_bounded() -> None:
    shapes = RequestShapes(CLIENTS, ISS)
    for i in range(RequestShapes.LIMIT + 10):
        shapes.validate(params(acr_values=f"urn:{i}"))
    assert 0 < len(shapes) <= RequestShapes.LIMIT
