"""PKCE (RFC 7636): S256 only, verifier and challenge syntax, constant-time comparison."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_sso.errors import InvalidRequest
from policy_sso.oidc import pkce

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def test_rfc7636_appendix_b_vector():
    assert pkce.s256(VERIFIER) == CHALLENGE
    assert pkce.verify_s256(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("verifier", ["a" * 43, "~" * 128, UNRESERVED[:43], UNRESERVED + UNRESERVED[:62]],
                         ids=["shortest-43", "longest-128", "unreserved-set", "every-unreserved-char"])
def test_well_formed_verifiers_match_their_challenge(verifier):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    pkce.validate_challenge(challenge, "S256")
    assert pkce.verify_s256(verifier, challenge)


BAD_VERIFIERS = [
    ("missing", None), ("empty", ""), ("wrong", VERIFIER[:-1] + "A"), ("too-short-42", "a" * 42),
    ("too-long-129", "a" * 129), ("space", VERIFIER[:42] + " "), ("plus", VERIFIER[:42] + "+"),
    ("trailing-newline", VERIFIER + "\n"), ("non-ascii", VERIFIER[:42] + "\u00e9"),
    ("the-challenge-itself", CHALLENGE), ("not-a-string", b"x" * 43),
]


@pytest.mark.parametrize("verifier", [v for _, v in BAD_VERIFIERS], ids=[i for i, _ in BAD_VERIFIERS])
def test_wrong_or_malformed_verifiers_fail(verifier):
    assert pkce.verify_s256(verifier, CHALLENGE) is False


@pytest.mark.parametrize("challenge", [CHALLENGE + "\n", CHALLENGE[:-1] + "\u00e9", "", None],
                         ids=["trailing-newline", "non-ascii", "empty", "none"])
def test_a_broken_stored_challenge_is_a_mismatch_not_an_exception(challenge):
    assert pkce.verify_s256(VERIFIER, challenge) is False


BAD_CHALLENGES = [
    ("plain-method", CHALLENGE, "plain"),
    ("no-method-means-plain", CHALLENGE, None),  # RFC 7636 §4.3: the default is plain
    ("empty-method", CHALLENGE, ""),
    ("lowercase-method", CHALLENGE, "s256"),
    ("method-without-challenge", None, "S256"),
    ("empty-challenge", "", "S256"),
    ("short-challenge", "abc", "S256"),
    ("padded", CHALLENGE + "=", "S256"),
    ("trailing-newline", CHALLENGE + "\n", "S256"),
    ("too-long", CHALLENGE + "A", "S256"),
    ("standard-base64-chars", CHALLENGE[:-2] + "+/", "S256"),
]


@pytest.mark.parametrize(("challenge", "method"), [r[1:] for r in BAD_CHALLENGES],
                         ids=[r[0] for r in BAD_CHALLENGES])
def test_bad_challenges_are_invalid_requests(challenge, method):
    with pytest.raises(InvalidRequest) as raised:
        pkce.validate_challenge(challenge, method)
    assert raised.value.error == "invalid_request" and raised.value.status == 400


def test_a_well_formed_s256_challenge_passes_and_no_pkce_is_the_callers_call():
    assert pkce.validate_challenge(CHALLENGE, "S256") is None
    assert pkce.validate_challenge(None, None) is None


@given(st.text(alphabet=UNRESERVED, min_size=43, max_size=128))
def test_every_valid_verifier_matches_its_own_challenge_only(verifier):
    challenge = pkce.s256(verifier)
    pkce.validate_challenge(challenge, "S256")
    assert pkce.verify_s256(verifier, challenge)
    assert not pkce.verify_s256(verifier, CHALLENGE) or verifier == VERIFIER


@given(st.text(max_size=200), st.text(max_size=60))
def test_arbitrary_input_never_raises(verifier, challenge):
    assert pkce.verify_s256(verifier, challenge) in (True, False)
