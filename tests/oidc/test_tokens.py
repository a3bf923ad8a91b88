"""ID tokens (OIDC Core §2, §3.3.2.11) and RFC 9068 access tokens, checked with joserfc (independent)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from policy_sso.errors import InvalidToken
from policy_sso.oidc import tokens
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import mint_logout_token

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 renames EdDSA
NOW = 1_767_268_800
ISS = "http://127.0.0.1:8080"
ALGS = ["RS256", "ES256", "EdDSA"]


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"))


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _joserfc(ring: KeyRing, token: str, alg: str) -> jose_jwt.Token:
    return jose_jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=[alg])


def _id_token(ring: KeyRing, **overrides) -> str:
    args = {"issuer": ISS, "subject": "u-alice", "audience": "portal", "auth_time": NOW - 5, "nonce": "n-1",
            "acr": "loa2", "amr": ["pwd", "otp", "mfa"], "sid": "sid-1", "now": NOW, "lifetime": 600}
    args.update(overrides)
    return tokens.mint_id_token(ring, **args)


def _access_token(ring: KeyRing, **overrides) -> str:
    args = {"issuer": ISS, "subject": "u-alice", "client_id": "portal", "scope": "openid profile",
            "now": NOW, "lifetime": 600, "jti": "j-1"}
    args.update(overrides)
    return tokens.mint_access_token(ring, **args)


# --- at_hash / c_hash ---------------------------------------------------------------------------

HALF_HASH_VECTORS = [
    # OIDC Core Appendix A (RS256): the access token and code of the spec's own example responses
    ("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", "RS256", "77QmUPtjPfzWtF2AnpK9RQ"),
    ("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk", "RS256", "LDktKdoQak3Pk0cnXxCltA"),
]


@pytest.mark.parametrize(("value", "alg", "expected"), HALF_HASH_VECTORS,
                         ids=["at_hash-appendix-A", "c_hash-appendix-A"])
def test_half_hash_matches_the_spec_examples(value, alg, expected):
    assert tokens.half_hash(value, alg) == expected


@pytest.mark.parametrize(("alg", "hash_fn", "length"), [("RS256", hashlib.sha256, 16),
                                                        ("ES256", hashlib.sha256, 16),
                                                        ("EdDSA", hashlib.sha512, 32)],
                         ids=["RS256-sha256", "ES256-sha256", "EdDSA-sha512"])
def test_half_hash_is_the_left_half_of_the_algs_hash(alg, hash_fn, length):
    digest = hash_fn(b"token-value").digest()
    assert tokens.half_hash("token-value", alg) == _b64(digest[:length]).decode()


# --- ID tokens ----------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
def test_id_token_claims_and_hashes_verify_with_joserfc(ring, alg):
    token = _id_token(ring, alg=alg, access_token="at-value", code="code-value")
    verified = _joserfc(ring, token, alg)
    claims = verified.claims
    assert verified.header["kid"] == ring.signing_key(alg)[0]
    assert (claims["iss"], claims["sub"], claims["aud"]) == (ISS, "u-alice", "portal")
    assert (claims["iat"], claims["exp"], claims["auth_time"]) == (NOW, NOW + 600, NOW - 5)
    assert (claims["nonce"], claims["acr"], claims["sid"], claims["amr"]) == ("n-1", "loa2", "sid-1",
                                                                              ["pwd", "otp", "mfa"])
    assert claims["at_hash"] == tokens.half_hash("at-value", alg)
    assert claims["c_hash"] == tokens.half_hash("code-value", alg)


def test_id_token_leaves_out_what_the_grant_lacks(ring):
    claims = _joserfc(ring, _id_token(ring, auth_time=None, nonce=None, acr=None, amr=[], sid=None),
                      "RS256").claims
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp"}  # no at_hash/c_hash without token/code


def test_extra_claims_never_override_the_protocol_claims(ring):
    token = _id_token(ring, extra_claims={"iss": "https://evil", "sub": "u-mallory", "nonce": "x",
                                          "email": "alice@example.com"})
    claims = _joserfc(ring, token, "RS256").claims
    assert (claims["iss"], claims["sub"], claims["nonce"], claims["email"]) == (ISS, "u-alice", "n-1",
                                                                                 "alice@example.com")


# --- access tokens (RFC 9068) -------------------------------------------------------------------

def test_access_token_is_rfc9068(ring):
    token = _access_token(ring, auth_time=NOW - 5, acr="loa2", amr=["pwd"])
    verified = _joserfc(ring, token, "RS256")
    assert verified.header["typ"] == "at+jwt" and verified.header["alg"] == "RS256"
    assert verified.claims == {"iss": ISS, "exp": NOW + 600, "aud": ISS, "sub": "u-alice",
                               "client_id": "portal", "iat": NOW, "jti": "j-1", "scope": "openid profile",
                               "auth_time": NOW - 5, "acr": "loa2", "amr": ["pwd"]}
    assert tokens.verify_access_token(ring, token, ISS, NOW + 599)["jti"] == "j-1"


def test_access_token_in_another_alg_when_told(ring):
    token = _access_token(ring, alg="ES256")
    assert _joserfc(ring, token, "ES256").header["alg"] == "ES256"
    assert tokens.verify_access_token(ring, token, ISS, NOW)["sub"] == "u-alice"


def _forged(ring: KeyRing, forge: str, typ: str = "at+jwt") -> str:
    claims = {"iss": ISS, "aud": ISS, "sub": "u", "client_id": "c", "jti": "j", "exp": NOW + 60}
    kid, _ = ring.signing_key("RS256")
    if forge == "none-alg":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"})
    if forge == "foreign-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, other, algorithm="RS256", headers={"kid": kid, "typ": typ})
    if forge == "unknown-kid":
        return jwt.encode(claims, ring.signing_key("RS256")[1], algorithm="RS256",
                          headers={"kid": "nope", "typ": "at+jwt"})
    if forge == "kid-of-another-alg":  # an ES256 key's kid on an RS256 signature
        return jwt.encode(claims, ring.signing_key("RS256")[1], algorithm="RS256",
                          headers={"kid": ring.signing_key("ES256")[0], "typ": "at+jwt"})
    if forge == "tampered-claims":
        header, _, signature = _access_token(ring).split(".")
        body = _b64(json.dumps({**claims, "sub": "u-admin"}).encode()).decode()
        return f"{header}.{body}.{signature}"
    # the classic confusion: HMAC keyed with the RSA public key PEM
    public_jwk = next(k for k in ring.jwks()["keys"] if k["kid"] == kid)
    secret = jwt.algorithms.RSAAlgorithm.from_jwk(public_jwk).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + _b64(signature)).decode()


FORGERIES = ["none-alg", "foreign-key", "unknown-kid", "kid-of-another-alg", "tampered-claims",
             "hs256-with-public-key"]


@pytest.mark.parametrize("forge", FORGERIES)
def test_forged_access_tokens_are_refused(ring, forge):
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, _forged(ring, forge), ISS, NOW)


ACCESS_REFUSALS = [
    ("expired", {}, NOW + 600, ISS, None),
    ("wrong-issuer", {}, NOW, "http://other", None),
    ("wrong-audience", {"audience": "https://api.example.com"}, NOW, ISS, None),
    ("not-for-this-resource", {}, NOW, ISS, "https://api.example.com"),
]


@pytest.mark.parametrize(("case", "mint", "at", "issuer", "audience"), ACCESS_REFUSALS,
                         ids=[r[0] for r in ACCESS_REFUSALS])
def test_access_token_refusals(ring, case, mint, at, issuer, audience):
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, _access_token(ring, **mint), issuer, at, audience=audience)


def test_an_access_token_for_a_named_resource_verifies_there(ring):
    token = _access_token(ring, audience="https://api.example.com")
    assert tokens.verify_access_token(ring, token, ISS, NOW, audience="https://api.example.com")["aud"] == \
        "https://api.example.com"


@pytest.mark.parametrize("other", ["id-token", "logout-token", "plain-jwt"])
def test_only_typ_at_jwt_is_an_access_token(ring, other):
    token = {"id-token": lambda: _id_token(ring, audience=ISS),
             "logout-token": lambda: mint_logout_token(ring, issuer=ISS, audience=ISS, subject="u", now=NOW,
                                                       jti="j"),
             "plain-jwt": lambda: ring.sign({"iss": ISS, "aud": ISS, "sub": "u", "client_id": "c", "jti": "j",
                                             "exp": NOW + 60}, "RS256")}[other]()
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, token, ISS, NOW)


@pytest.mark.parametrize("garbage", ["", "a.b.c", "not-a-jwt", "eyJhbGciOiJSUzI1NiJ9.e30.",
                                     "\u00e9.\u00e9.\u00e9"],
                         ids=["empty", "three-words", "one-word", "empty-signature", "non-ascii"])
def test_garbage_bearer_values_are_invalid_tokens(ring, garbage):
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, garbage, ISS, NOW)


# --- id_token_hint (OIDC Core §3.1.2.1) -----------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
def test_an_expired_id_token_is_still_a_valid_hint(ring, alg):
    token = _id_token(ring, alg=alg, lifetime=60)
    claims = tokens.verify_id_token_hint(ring, token, ISS, NOW + 86400)
    assert (claims["sub"], claims["aud"]) == ("u-alice", "portal")  # aud returned for the caller to check


HINT_REFUSALS = ["other-issuer", "bad-signature", "access-token", "logout-token", "foreign-key"]


@pytest.mark.parametrize("case", HINT_REFUSALS)
def test_id_token_hint_refusals(ring, case):
    issuer = "http://elsewhere" if case == "other-issuer" else ISS
    token = {"other-issuer": lambda: _id_token(ring),
             "bad-signature": lambda: _id_token(ring)[:-4] + "AAAA",
             "access-token": lambda: _access_token(ring),
             "logout-token": lambda: mint_logout_token(ring, issuer=ISS, audience="portal", subject="u-alice",
                                                       now=NOW, jti="j"),
             "foreign-key": lambda: _forged(ring, "foreign-key", typ="JWT")}[case]()
    with pytest.raises(InvalidToken):
        tokens.verify_id_token_hint(ring, token, issuer, NOW)

