"""DPoP proofs as JWS text (RFC 7515 §7.1, RFC 7518 §3): what the proof parser refuses, and its key cache.

The parser is the project's own (one pass, cryptography for the signature), so it gets what pyjwt
used to give: refusals of malformed segments, wrong curves and lengths, critical extensions, and a
hypothesis run showing that no input raises anything but the DPoP errors. Proofs made with joserfc
or by hand with cryptography, never with the project's code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import ECKey

from policy_sso.config import DpopSettings
from policy_sso.errors import OAuthError
from policy_sso.oidc import dpop

NOW = 1_800_000_000
URL = "https://op.example/token"
EC = ECKey.generate_key("P-256")
CLAIMS = {"htm": "POST", "htu": URL, "iat": NOW, "jti": "j-1"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_int(value: int, size: int) -> str:
    return _b64(value.to_bytes(size, "big"))


def signed(header: dict[str, Any], claims: dict[str, Any] = CLAIMS, *,
           private: ec.EllipticCurvePrivateKey | None = None, size: int = 32) -> str:
    """Return a proof signed by hand: ECDSA with SHA-256, r||s of ``size`` octets each (RFC 7518 §3.4)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature((private or ec.generate_private_key(ec.SECP256R1())).sign(
        signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def ec_jwk(private: ec.EllipticCurvePrivateKey, crv: str, size: int) -> dict[str, str]:
    numbers = private.public_key().public_numbers()
    return {"kty": "EC", "crv": crv, "x": _b64_int(numbers.x, size), "y": _b64_int(numbers.y, size)}


def by_hand(claims: Any = CLAIMS, **header: Any) -> str:
    """Return a proof by a fresh P-256 key, signed by hand, with ``header`` members added."""
    private = ec.generate_private_key(ec.SECP256R1())
    return signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(private, "P-256", 32), **header}, claims,
                  private=private)


def verify(text: str) -> dpop.Proof:
    return dpop.verify_proof(text, method="POST", url=URL, now=NOW, settings=DpopSettings(),
                             use_jti=lambda key, expires: True)


def good() -> str:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": EC.as_dict(private=False)}
    return jwt.encode(header, CLAIMS, EC)


def _p384() -> str:
    private = ec.generate_private_key(ec.SECP384R1())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk(private, "P-384", 48)}
    return signed(header, private=private, size=48)


def _off_curve() -> str:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ec_jwk(private, "P-256", 32)
    jwk["y"] = _b64_int(int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big") ^ 1, 32)
    return signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}, private=private)


def _rsa(bits: int, e: int) -> str:
    """Return an RS256 proof whose jwk has an odd modulus of ``bits`` bits and exponent ``e``, unsigned.

    The key is refused for its size before any signature is looked at, so none is made.
    """
    n = (1 << (bits - 1)) | 1
    jwk = {"kty": "RSA", "n": _b64_int(n, (bits + 7) // 8), "e": _b64_int(e, (e.bit_length() + 7) // 8)}
    header = {"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(CLAIMS).encode())}.{_b64(b'sig')}"


def _swap(segment: int, value: str) -> str:
    parts = good().split(".")
    parts[segment] = value
    return ".".join(parts)


REFUSED = [
    ("padded_header", lambda: _swap(0, good().split(".")[0] + "=" * (-len(good().split(".")[0]) % 4 or 4)),
     "not a JWT"),
    ("base64_not_base64url", lambda: _swap(0, good().split(".")[0].replace("-", "+").replace("_", "/")
                                           + ("+" if "-" not in good().split(".")[0] else "")), "not a JWT"),
    ("header_not_json", lambda: _swap(0, _b64(b"{not json")), "not a JWT"),
    ("header_an_array", lambda: _swap(0, _b64(b"[1, 2]")), "not a JWT"),
    ("header_deeply_nested", lambda: _swap(0, _b64(b"[" * 3000 + b"]" * 3000)), "not a JWT"),
    ("payload_an_array", lambda: by_hand([1]), "payload"),
    ("crit_header", lambda: by_hand(crit=["exp"], exp=1), "critical"),
    ("es256_with_a_p384_key", _p384, "not a usable public key"),
    ("point_not_on_the_curve", _off_curve, "not a usable public key"),
    ("short_x", lambda: signed({"typ": "dpop+jwt", "alg": "ES256",
                                "jwk": {**EC.as_dict(private=False), "x": _b64(b"\1" * 31)}}),
     "not a usable public key"),
    ("rsa_exponent_of_65_bits", lambda: _rsa(2048, (1 << 64) + 1), "larger than"),
    ("rsa_modulus_of_8200_bits", lambda: _rsa(8200, 65537), "larger than"),
    ("rsa_modulus_of_2040_bits", lambda: _rsa(2040, 65537), "shorter than"),
    ("signature_too_long", lambda: _swap(2, good().split(".")[2] + "AAAA"), "signature"),
    ("signature_not_base64url", lambda: _swap(2, "!!!!"), "signature"),
    ("signature_empty", lambda: _swap(2, ""), "signature"),
    ("payload_not_ascii", lambda: _swap(1, "\u00e9\u00e9\u00e9\u00e9"), "payload is not base64url"),
    ("payload_changed", lambda: _swap(1, _b64(json.dumps({**CLAIMS, "jti": "j-2"}).encode())), "signature"),
]


@pytest.mark.parametrize("make,message", [(m, e) for _, m, e in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_a_malformed_proof_is_refused_with_what_is_wrong(make: Any, message: str) -> None:
    with pytest.raises(dpop.InvalidDpopProof, match=message) as caught:
        verify(make())
    assert caught.value.error == "invalid_dpop_proof" and caught.value.status == 400


def test_a_proof_signed_by_hand_verifies() -> None:
    assert verify(by_hand()).jti == "j-1"


def test_a_good_proof_still_verifies_and_its_header_and_key_are_cached() -> None:
    dpop._checked_header.cache_clear()
    dpop._public_key.cache_clear()
    for _ in range(3):
        assert verify(good()).jkt == EC.thumbprint()
    info = dpop._checked_header.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (1, 2, dpop.KEY_CACHE_SIZE)
    assert dpop._public_key.cache_info().misses == 1  # the key is made once, for the one header text
    # a flood of fresh keys cannot grow either cache past its bound
    for _ in range(dpop.KEY_CACHE_SIZE + 8):
        verify(by_hand())
    assert dpop._checked_header.cache_info().currsize == dpop.KEY_CACHE_SIZE
    assert dpop._public_key.cache_info().currsize == dpop.KEY_CACHE_SIZE


def test_a_refused_header_or_key_is_not_cached() -> None:
    dpop._checked_header.cache_clear()
    dpop._public_key.cache_clear()
    for _ in range(2):
        with pytest.raises(dpop.InvalidDpopProof):
            verify(_off_curve())
    assert dpop._public_key.cache_info().currsize == 0
    assert dpop._checked_header.cache_info().currsize == 0


_TEXT = st.text(alphabet="ABCabc012-_.=+/!{}\"", max_size=300)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_TEXT, st.builds(lambda t, i: good()[:i] + t + good()[i:], _TEXT, st.integers(0, 400))))
def test_random_and_mutated_proofs_raise_only_dpop_errors(text: str) -> None:
    try:
        verify(text)
    except OAuthError as err:
        assert err.error in ("invalid_dpop_proof", "use_dpop_nonce")
