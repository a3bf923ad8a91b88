"""Signing keys, ID tokens and access tokens, verified with joserfc (an independent JOSE library)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from policy_sso.errors import InvalidToken
from policy_sso.oidc import tokens
from policy_sso.oidc.keys import KeyRing, thumbprint

NOW = 1_767_268_800
ISS = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"))


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _verify_independently(ring: KeyRing, token: str, alg: str) -> dict:
    keys = KeySet.import_key_set(ring.jwks())
    return jose_jwt.decode(token, keys, algorithms=[alg]).claims


def test_keys_are_created_once_with_private_modes_and_reused(tmp_path):
    first = KeyRing.load_or_create(tmp_path)
    files = sorted((tmp_path / "keys").glob("*.pem"))
    assert [f.name for f in files] == ["ES256.0001.pem", "EdDSA.0001.pem", "RS256.0001.pem"]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    again = KeyRing.load_or_create(tmp_path)
    assert again.jwks() == first.jwks()


def test_kid_is_the_rfc7638_thumbprint(ring):
    for jwk in ring.jwks()["keys"]:
        members = {k: jwk[k] for k in sorted(jwk) if k in ("e", "kty", "n", "crv", "x", "y")}
        canonical = ",".join(f'"{k}":"{v}"' for k, v in members.items())
        digest = hashlib.sha256(("{" + canonical + "}").encode()).digest()
        assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == thumbprint(jwk)
        assert "d" not in jwk and "p" not in jwk  # never a private member in the JWKS


def test_rotation_keeps_old_keys_published_and_signs_with_the_new(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, ("RS256",))
    old_token = ring.sign({"sub": "a"}, "RS256")
    old_kid, _ = ring.signing_key("RS256")
    new = ring.rotate("RS256")
    assert new.kid != old_kid
    assert ring.signing_key("RS256")[0] == new.kid
    assert {k["kid"] for k in ring.jwks()["keys"]} >= {old_kid, new.kid}
    assert _verify_independently(ring, old_token, "RS256")["sub"] == "a"
    reloaded = KeyRing.load_or_create(tmp_path, ("RS256",))
    assert reloaded.signing_key("RS256")[0] == new.kid


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_id_token_claims_and_hashes(ring, alg):
    token = tokens.mint_id_token(ring, issuer=ISS, subject="u-alice", audience="portal",
                                 auth_time=NOW - 5, nonce="n-1", acr="loa2", amr=["pwd", "otp", "mfa"],
                                 sid="sid-1", now=NOW, lifetime=600, alg=alg, access_token="at-value",
                                 code="code-value")
    claims = _verify_independently(ring, token, alg)
    assert claims["iss"] == ISS and claims["sub"] == "u-alice" and claims["aud"] == "portal"
    assert (claims["iat"], claims["exp"], claims["auth_time"]) == (NOW, NOW + 600, NOW - 5)
    assert (claims["nonce"], claims["acr"], claims["sid"]) == ("n-1", "loa2", "sid-1")
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    hash_fn = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    half = hash_fn(b"at-value").digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(half[: len(half) // 2]).rstrip(b"=").decode()
    assert claims["c_hash"] == tokens.half_hash("code-value", alg)
    assert jwt.get_unverified_header(token)["alg"] == alg


def test_access_token_is_rfc9068(ring):
    token = tokens.mint_access_token(ring, issuer=ISS, subject="u-alice", client_id="portal",
                                     scope="openid profile", now=NOW, lifetime=600, jti="j-1")
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = _verify_independently(ring, token, "RS256")
    assert {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope"} <= set(claims)
    assert tokens.verify_access_token(ring, token, ISS, NOW + 599)["jti"] == "j-1"


@pytest.mark.parametrize(("case", "at"), [("expired", NOW + 600), ("wrong-issuer", NOW)],
                         ids=["expired", "wrong-issuer"])
def test_access_token_refusals(ring, case, at):
    token = tokens.mint_access_token(ring, issuer=ISS, subject="u", client_id="c", scope="openid", now=NOW,
                                     lifetime=600, jti="j")
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, token, ISS if case != "wrong-issuer" else "http://other", at)


def test_an_id_token_is_not_an_access_token(ring):
    token = tokens.mint_id_token(ring, issuer=ISS, subject="u", audience="c", auth_time=NOW, nonce=None,
                                 acr=None, amr=None, sid=None, now=NOW, lifetime=600)
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, token, ISS, NOW)


@pytest.mark.parametrize("forge", ["none-alg", "foreign-key", "hs256-with-public-key"])
def test_forged_tokens_are_refused(ring, forge):
    claims = {"iss": ISS, "sub": "u", "client_id": "c", "jti": "j", "exp": NOW + 60}
    kid, _ = ring.signing_key("RS256")
    if forge == "none-alg":
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"})
    elif forge == "foreign-key":
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims, other, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
    else:  # the classic confusion: HMAC keyed with the RSA public key PEM
        public_jwk = next(k for k in ring.jwks()["keys"] if k["kid"] == kid)
        secret = jwt.algorithms.RSAAlgorithm.from_jwk(public_jwk).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
        body = _b64(json.dumps(claims).encode())
        signature = hmac.new(secret, header + b"." + body, hashlib.sha256).digest()
        token = (header + b"." + body + b"." + _b64(signature)).decode()
    with pytest.raises(InvalidToken):
        tokens.verify_access_token(ring, token, ISS, NOW)


def test_id_token_hint_may_be_expired_but_must_be_ours(ring):
    token = tokens.mint_id_token(ring, issuer=ISS, subject="u-bob", audience="portal", auth_time=NOW,
                                 nonce=None, acr=None, amr=None, sid=None, now=NOW, lifetime=60)
    assert tokens.verify_id_token_hint(ring, token, ISS, NOW + 86400)["sub"] == "u-bob"
    with pytest.raises(InvalidToken):
        tokens.verify_id_token_hint(ring, token, "http://elsewhere", NOW)
    with pytest.raises(InvalidToken):
        tokens.verify_id_token_hint(ring, token[:-4] + "AAAA", ISS, NOW)
