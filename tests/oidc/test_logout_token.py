"""Logout tokens (OIDC Back-Channel Logout 1.0 §2.4), verified with joserfc against the JWKS."""

from __future__ import annotations

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import (
    BACKCHANNEL_EVENT,
    LOGOUT_TOKEN_LIFETIME,
    LOGOUT_TOKEN_TYP,
    mint_logout_token,
)

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 renames EdDSA
ISS = "http://127.0.0.1:8080"
NOW = 1_767_268_800


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"))


NAMES = [("sid-and-sub", "u-alice", "sid-1"), ("sub-only", "u-alice", None), ("sid-only", None, "sid-1")]


@pytest.mark.parametrize(("subject", "sid"), [n[1:] for n in NAMES], ids=[n[0] for n in NAMES])
@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_logout_token_claims_per_section_2_4(ring, alg, subject, sid):
    token = mint_logout_token(ring, issuer=ISS, audience="portal", subject=subject, sid=sid, now=NOW,
                              jti="j-1", alg=alg)
    verified = jose_jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=[alg])
    claims = verified.claims
    assert verified.header["typ"] == LOGOUT_TOKEN_TYP == "logout+jwt"
    assert verified.header["kid"] == ring.signing_key(alg)[0]
    assert (claims["iss"], claims["aud"], claims["iat"], claims["jti"]) == (ISS, "portal", NOW, "j-1")
    assert claims["exp"] == NOW + LOGOUT_TOKEN_LIFETIME and LOGOUT_TOKEN_LIFETIME <= 300  # short-lived
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert BACKCHANNEL_EVENT == "http://schemas.openid.net/event/backchannel-logout"
    assert (claims.get("sub"), claims.get("sid")) == (subject, sid)
    assert "nonce" not in claims  # §2.4: a logout token must not contain a nonce


def test_a_logout_token_names_sid_or_sub(ring):
    with pytest.raises(ValueError, match="sid, a sub"):
        mint_logout_token(ring, issuer=ISS, audience="c", now=NOW, jti="j")
