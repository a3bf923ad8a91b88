"""Malformed numbers, JSON and times are refused as request errors, never raised (issue 14).

One parser for integer parameters (ASCII digits within bounds), JSON of bounded
depth with no NaN or Infinity, and finite NumericDates wherever a time is read.
"""

from __future__ import annotations

import contextlib
import json

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_sso.errors import InvalidRequest
from policy_sso.model import KeyRef, TrustedIssuer
from policy_sso.oidc.hint_token import HintVerifier
from policy_sso.request import MAX_JSON_DEPTH, AuthRequest, essential_acr_values, loads_json, parse_int
from policy_sso.sessions import SessionLifetime, open_store
from policy_sso.sessions.fixture import FixtureError, parse_time

NOW = 1_800_000_000
OP = "http://127.0.0.1:8080"
ISS = "https://intranet.example.com"
SECRET = b"s" * 64


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("60", 60), ("0007", 7), ("9999999999", 9999999999)],
                         ids=["zero", "minute", "leading-zeros", "ten-digits"])
def test_ascii_integers_within_bounds_are_read(raw: str, value: int) -> None:
    assert parse_int(raw, "max_age") == value
    assert AuthRequest.from_params("portal", {"max_age": raw}).max_age == value


@pytest.mark.parametrize("raw", ["\u00b2", "\u0663", "\uff11", "1" * 4300, "1" * 11, "-1", "+1", " 1", "1 ",
                                 "1\n", "1e3", "0x10", "1_000", "NaN", "Infinity", "", "1.5"],
                         ids=["superscript", "arabic-indic", "fullwidth", "4300-digits", "11-digits",
                              "negative", "plus", "space-before", "space-after", "newline", "exponent", "hex",
                              "underscore", "nan", "infinity", "empty", "fraction"])
def test_anything_else_is_invalid_request(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="max_age"):
        parse_int(raw, "max_age")
    if raw:  # an empty max_age is the same as none (OIDC Core §3.1.2.1 optional parameter)
        with pytest.raises(InvalidRequest):
            AuthRequest.from_params("portal", {"max_age": raw})


def test_a_maximum_is_enforced() -> None:
    assert parse_int("300", "n", maximum=300) == 300
    with pytest.raises(InvalidRequest, match="at most 300"):
        parse_int("301", "n", maximum=300)


@pytest.mark.parametrize("text", ["[" * 20000 + "]" * 20000, '{"a":' * (MAX_JSON_DEPTH + 1) + "1" +
                                  "}" * (MAX_JSON_DEPTH + 1), '{"a":NaN}', '{"a":[Infinity]}',
                                  '{"a":-Infinity}', '{"a":' + "1" * 5000 + "}", "{", b"\xff",
                                  '{"username":"\\ud800"}', '{"\\udfff":1}', '["a\\ud83d"]',
                                  b'{"a":"\\udc00\\ud83d"}'],
                         ids=["20000-deep", "one-past-the-limit", "nan", "infinity", "minus-infinity",
                              "5000-digit-number", "truncated", "not-utf8", "lone-high-surrogate",
                              "lone-low-surrogate-key", "unpaired-at-the-end", "pair-in-the-wrong-order"])
def test_hostile_json_is_invalid_request(text: str | bytes) -> None:
    with pytest.raises(InvalidRequest):
        loads_json(text)
    if isinstance(text, str):
        with pytest.raises(InvalidRequest):
            essential_acr_values(text)


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    assert loads_json('{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a pair is one character
    assert loads_json('{"a":"\\\\ud800"}') == {"a": "\\ud800"}  # a backslash, then the letters ud800


def test_json_within_the_depth_and_brackets_inside_strings_are_fine() -> None:
    nested = '{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    assert loads_json(nested) is not None
    assert loads_json(json.dumps({"s": "[" * 1000 + "{" * 1000})) == {"s": "[" * 1000 + "{" * 1000}
    claims = '{"id_token":{"acr":{"essential":true,"values":["urn:a","urn:b"]}},"x":"[[[[[[[[[["}'
    assert essential_acr_values(claims) == ("urn:a", "urn:b")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="[]{}\":,\\ 0aN", max_size=200))
def test_any_text_is_parsed_or_refused_never_raised_otherwise(text: str) -> None:
    with contextlib.suppress(InvalidRequest):  # anything but InvalidRequest fails the test
        loads_json(text)


def _verifier() -> tuple[HintVerifier, object]:
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp())
    (base / "hs.key").write_bytes(SECRET)
    trusted = TrustedIssuer(ISS, KeyRef("file", "hs.key"), "HS256", 120, ("wia",))
    return HintVerifier([trusted], base, OP), open_store("memory://", SessionLifetime())


def _hint(**times: object) -> str:
    claims = {"iss": ISS, "aud": OP, "sub": "u-alice", "jti": "j", "iat": NOW, "exp": NOW + 60, **times}
    # json.dumps writes NaN and Infinity as pyjwt's encoder would not refuse them: what an attacker can send
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize("times", [{"iat": float("nan")}, {"exp": float("nan")}, {"exp": float("inf")},
                                   {"iat": float("-inf")}, {"nbf": float("nan")}, {"nbf": float("inf")},
                                   {"iat": True}, {"exp": "soon"}],
                         ids=["iat-nan", "exp-nan", "exp-infinity", "iat-minus-infinity", "nbf-nan",
                              "nbf-infinity", "iat-bool", "exp-string"])
def test_a_hint_with_a_time_that_is_not_a_finite_number_is_refused(times: dict[str, object]) -> None:
    verifier, store = _verifier()
    with pytest.raises(InvalidRequest, match="NumericDate"):
        verifier.verify(_hint(**times), now=NOW, store=store, user_exists=lambda s: True)
    assert store.use_jti("hint:" + ISS, "j", NOW + 60, NOW)  # the refused token spent nothing


def test_a_hint_not_yet_valid_by_nbf_is_refused() -> None:
    verifier, store = _verifier()
    with pytest.raises(InvalidRequest, match="nbf"):
        verifier.verify(_hint(nbf=NOW + 600), now=NOW, store=store, user_exists=lambda s: True)
    valid = verifier.verify(_hint(nbf=NOW), now=NOW, store=store, user_exists=lambda s: True)
    assert valid.subject == "u-alice"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300])
def test_session_fixture_times_must_be_finite(value: float) -> None:
    with pytest.raises(FixtureError):
        parse_time(value, NOW)


def test_the_depth_check_is_linear_in_the_body() -> None:
    import time

    # an unterminated string of escaped quotes after enough openers: a whole-string regex rescans per quote
    hostile = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + '"' + '\\"' * 32_000
    started = time.perf_counter()
    with pytest.raises(InvalidRequest):
        loads_json(hostile)
    assert time.perf_counter() - started < 1.0  # the quadratic scan took about 40 s; this takes ~30 ms


def test_a_dpop_proof_with_a_lone_surrogate_is_refused_not_raised() -> None:
    # its jti was encoded for the store: a traceback, and a 400 that said nothing (attack review)
    from cryptography.hazmat.primitives.asymmetric import ec

    from policy_sso.config import DpopSettings
    from policy_sso.oidc.dpop import InvalidDpopProof, verify_proof

    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.pop("key_ops", None)
    proof = jwt.encode({"htm": "POST", "htu": f"{OP}/token", "jti": "\ud800", "iat": NOW}, private,
                       algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})
    with pytest.raises(InvalidDpopProof, match="payload is not a JSON object"):
        verify_proof(proof, method="POST", url=f"{OP}/token", now=NOW, settings=DpopSettings(),
                     use_jti=lambda key, expires: key.encode() and True)


@pytest.mark.parametrize("iat", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "minus-inf"])
def test_a_dpop_proof_with_a_time_that_is_not_a_finite_number_is_refused(iat: float) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from policy_sso.config import DpopSettings
    from policy_sso.oidc.dpop import InvalidDpopProof, verify_proof

    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.pop("key_ops", None)
    proof = jwt.encode({"htm": "POST", "htu": f"{OP}/token", "jti": "p1", "iat": iat}, private,
                       algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})
    with pytest.raises(InvalidDpopProof, match="payload is not a JSON object"):  # NaN is not JSON
        verify_proof(proof, method="POST", url=f"{OP}/token", now=NOW, settings=DpopSettings(),
                     use_jti=lambda key, expires: True)
