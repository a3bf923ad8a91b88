"""PKCE (RFC 7636): S256 only, verifier syntax, constant-time comparison."""

from __future__ import annotations

import pytest

from policy_sso.errors import InvalidRequest
from policy_sso.oidc import pkce

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector():
    assert pkce.s256(VERIFIER) == CHALLENGE
    assert pkce.verify_s256(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("verifier", [None, "", VERIFIER[:-1] + "A", "short", "x" * 129, VERIFIER[:42] + " "],
                         ids=["missing", "empty", "wrong", "too-short", "too-long", "bad-char"])
def test_wrong_or_malformed_verifiers_fail(verifier):
    assert not pkce.verify_s256(verifier, CHALLENGE)


@pytest.mark.parametrize(("challenge", "method"), [(CHALLENGE, "plain"), (None, "S256"), ("abc", "S256"),
                                                   (CHALLENGE + "=", None)],
                         ids=["plain-method", "method-without-challenge", "short-challenge", "padded"])
def test_bad_challenges_are_invalid_requests(challenge, method):
    with pytest.raises(InvalidRequest):
        pkce.validate_challenge(challenge, method)


def test_a_good_challenge_passes():
    pkce.validate_challenge(CHALLENGE, "S256")
    pkce.validate_challenge(CHALLENGE, None)
