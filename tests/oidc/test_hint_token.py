"""login_hint_token verification (SPEC §5): every check, each refusal naming it, no jti spent on refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from policy_sso.errors import InvalidRequest
from policy_sso.model import KeyRef, TrustedIssuer
from policy_sso.oidc.hint_token import HintVerifier, mint_hint_token

NOW = 1_767_268_800
OP = "http://127.0.0.1:8080"
HS_ISS, ES_ISS, RS_ISS = "https://intranet.example.com", "https://partner.example.com", "https://rsa.example.com"
SECRET = b"s" * 48
USERS = {"u-alice", "u-bob"}


class JtiLedger:
    """The one store operation a verifier uses, recorded so tests can see what was spent."""

    def __init__(self) -> None:
        self.used: set[tuple[str, str]] = set()

    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        if (namespace, jti) in self.used:
            return False
        self.used.add((namespace, jti))
        return True


def _pem(private, public: bool) -> bytes:
    if public:
        return private.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("keys")
    es = ec.generate_private_key(ec.SECP256R1())
    rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (base / "hs.key").write_bytes(SECRET)
    (base / "es.pub.pem").write_bytes(_pem(es, public=True))
    (base / "rs.pub.pem").write_bytes(_pem(rs, public=True))
    return {"base": base, "es": _pem(es, public=False), "rs": _pem(rs, public=False),
            "rs_public": _pem(rs, public=True)}


def _issuer(issuer: str, file: str, alg: str) -> TrustedIssuer:
    return TrustedIssuer(issuer, KeyRef("file", file), alg, 120, ("wia",))


@pytest.fixture
def verifier(keys) -> HintVerifier:
    return HintVerifier([_issuer(HS_ISS, "hs.key", "HS256"), _issuer(ES_ISS, "es.pub.pem", "ES256"),
                         _issuer(RS_ISS, "rs.pub.pem", "RS256")], keys["base"], OP)


def _verify(verifier: HintVerifier, token: str, ledger: JtiLedger | None = None):
    return verifier.verify(token, now=NOW, store=ledger or JtiLedger(), user_exists=USERS.__contains__)


def _mint(**overrides) -> str:
    args = {"issuer": HS_ISS, "audience": OP, "subject": "u-alice", "lifetime": 60, "now": NOW, "jti": "j-1"}
    args.update(overrides)
    return mint_hint_token(SECRET, "HS256", **args)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _hand_signed(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(claims).encode())
    return (signing_input + b"." + _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


@pytest.mark.parametrize("alg", ["HS256", "ES256"])
def test_a_valid_hint_names_the_user_and_proves_the_declared_amr(verifier, keys, alg):
    key, issuer = (SECRET, HS_ISS) if alg == "HS256" else (keys["es"], ES_ISS)
    token = mint_hint_token(key, alg, issuer=issuer, audience=OP, subject="u-bob", lifetime=60, now=NOW)
    result = _verify(verifier, token)
    assert (result.subject, result.amr, result.issuer) == ("u-bob", ("wia",), issuer)


ALL = {"iss": HS_ISS, "aud": OP, "sub": "u-alice", "iat": NOW, "exp": NOW + 60, "jti": "j"}
REFUSALS = [
    ("expired", {"iat": NOW - 200, "exp": NOW - 100}, "expired"),
    ("not-yet-valid", {"iat": NOW + 100, "exp": NOW + 160}, "not yet valid"),
    ("lifetime-too-long", {"exp": NOW + 121}, "lifetime 121s exceeds the allowed 120s"),
    ("wrong-aud", {"aud": "https://elsewhere"}, "aud is not this provider"),
    ("untrusted-iss", {"iss": "https://evil.example.com"}, "is not trusted"),
    ("unknown-sub", {"sub": "u-mallory"}, "sub does not name a known user"),
    ("no-sub", {"sub": None}, "sub is missing"),
    ("no-exp", {"exp": None}, "iat and exp are required"),
    ("no-jti", {"jti": None}, "jti is required"),
]


@pytest.mark.parametrize(("case", "change", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_failed_check_and_spend_no_jti(verifier, case, change, message):
    claims = {k: v for k, v in {**ALL, **change}.items() if v is not None}
    ledger = JtiLedger()
    with pytest.raises(InvalidRequest, match=message):
        _verify(verifier, jwt.encode(claims, SECRET, algorithm="HS256"), ledger)
    assert ledger.used == set()


def test_alg_none_is_refused(verifier):
    token = jwt.encode(ALL, None, algorithm="none")
    with pytest.raises(InvalidRequest, match="alg none"):
        _verify(verifier, token)


def test_rs256_issuer_sent_hs256_signed_with_its_public_key_is_refused(verifier, keys):
    token = _hand_signed({"alg": "HS256", "typ": "JWT"}, {**ALL, "iss": RS_ISS}, keys["rs_public"])
    with pytest.raises(InvalidRequest, match="alg HS256 is not the configured RS256"):
        _verify(verifier, token)


def test_a_bad_signature_is_refused(verifier):
    token = jwt.encode(ALL, b"x" * 48, algorithm="HS256")
    with pytest.raises(InvalidRequest, match="signature is invalid"):
        _verify(verifier, token)


def test_a_replayed_jti_is_refused(verifier):
    ledger = JtiLedger()
    token = _mint()
    _verify(verifier, token, ledger)
    with pytest.raises(InvalidRequest, match="replay"):
        _verify(verifier, token, ledger)


def test_a_client_whose_policy_trusts_no_issuer(keys):
    with pytest.raises(InvalidRequest, match="trusts no issuer"):
        _verify(HintVerifier([], keys["base"], OP), _mint())


@pytest.mark.parametrize("garbage", ["", "not.a.jwt", "a.b", "eyJhbGciOiJIUzI1NiJ9.e30"],
                         ids=["empty", "words", "two-parts", "no-signature"])
def test_garbage_is_refused(verifier, garbage):
    with pytest.raises(InvalidRequest):
        _verify(verifier, garbage)


def test_an_unavailable_key_fails_at_build_time(tmp_path: Path):
    from policy_sso.errors import PolicySSOError

    with pytest.raises(PolicySSOError, match="not available"):
        HintVerifier([_issuer(HS_ISS, "missing.key", "HS256")], tmp_path, OP)
