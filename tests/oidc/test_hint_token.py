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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.errors import InvalidRequest, PolicySSOError
from policy_sso.model import KeyRef, TrustedIssuer
from policy_sso.oidc.hint_token import HintVerifier, mint_hint_token
from policy_sso.sessions import SessionLifetime, open_store

NOW = 1_767_268_800
OP = "http://127.0.0.1:8080"
HS_ISS = "https://intranet.example.com"
SECRET = b"s" * 64  # long enough for HS512 (RFC 7518 §3.2: at least the hash size)
USERS = {"u-alice", "u-bob"}
# one trusted issuer per supported alg: (issuer, alg, key file the verifier reads, key the minter signs with)
ASYMMETRIC = {"RS256": "rsa", "PS256": "rsa", "ES256": "ec", "EdDSA": "ed25519"}


class SpyStore:
    """The real memory store, with a record of every use_jti call (to prove refusals never make one)."""

    def __init__(self) -> None:
        self.inner = open_store("memory://", SessionLifetime())
        self.calls: list[tuple[str, str, int, int | None]] = []

    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        self.calls.append((namespace, jti, expires_at, now))
        return self.inner.use_jti(namespace, jti, expires_at, now)

    def intact_since(self) -> int:
        return self.inner.intact_since()


def _pem(private, public: bool) -> bytes:
    if public:
        return private.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("keys")
    privates = {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                "ec": ec.generate_private_key(ec.SECP256R1()),
                "ed25519": ed25519.Ed25519PrivateKey.generate()}
    (base / "hs.key").write_bytes(SECRET + b"\n")  # a trailing newline, as editors leave one
    signing = {}
    for kind, private in privates.items():
        (base / f"{kind}.pub.pem").write_bytes(_pem(private, public=True))
        signing[kind] = _pem(private, public=False)
    return {"base": base, "signing": signing, "rsa_public": _pem(privates["rsa"], public=True)}


def _issuer_for(alg: str) -> str:
    return f"https://{alg.lower()}.example.com"


def _trusted(alg: str, max_lifetime: int = 120) -> TrustedIssuer:
    if alg.startswith("HS"):
        issuer = HS_ISS if alg == "HS256" else _issuer_for(alg)
        return TrustedIssuer(issuer, KeyRef("file", "hs.key"), alg, max_lifetime, ("wia",))
    return TrustedIssuer(_issuer_for(alg), KeyRef("file", f"{ASYMMETRIC[alg]}.pub.pem"), alg, max_lifetime,
                         ("hwk", "mfa"))


ALL_ALGS = ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA"]


@pytest.fixture
def verifier(keys) -> HintVerifier:
    return HintVerifier([_trusted(alg) for alg in ALL_ALGS], keys["base"], OP)


def _signing_key(keys: dict, alg: str) -> bytes:
    return SECRET if alg.startswith("HS") else keys["signing"][ASYMMETRIC[alg]]


def _verify(verifier: HintVerifier, token: str, store: SpyStore | None = None, **options):
    return verifier.verify(token, now=NOW, store=store or SpyStore(), user_exists=USERS.__contains__,
                           **options)


ALL = {"iss": HS_ISS, "aud": OP, "sub": "u-alice", "iat": NOW, "exp": NOW + 60, "jti": "j"}


def _hs256(claims: dict, **header) -> str:
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, SECRET, algorithm="HS256",
                      headers=header or None)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _hand_signed(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(claims).encode())
    return (signing_input + b"." + _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


# --- valid hints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALL_ALGS)
def test_a_valid_hint_names_the_user_proves_the_declared_amr_and_spends_its_jti(verifier, keys, alg):
    trusted = _trusted(alg)
    token = mint_hint_token(_signing_key(keys, alg), alg, issuer=trusted.issuer, audience=OP, subject="u-bob",
                            lifetime=60, now=NOW, jti=f"jti-{alg}")
    store = SpyStore()
    result = _verify(verifier, token, store)
    assert (result.subject, result.amr, result.issuer, result.jti) == ("u-bob", trusted.amr, trusted.issuer,
                                                                      f"jti-{alg}")
    assert store.calls == [(f"hint:{trusted.issuer}", f"jti-{alg}", NOW + 60 + 30, NOW)]  # kept past exp+skew


ACCEPTED = [
    ("aud-list-containing-op", {"aud": ["https://other", OP]}, NOW),
    ("iat-in-the-future-within-skew", {"iat": NOW + 30, "exp": NOW + 90}, NOW),
    ("expired-but-within-skew", {"iat": NOW - 100, "exp": NOW - 29}, NOW),
    ("lifetime-exactly-max", {"exp": NOW + 120}, NOW),
    ("fractional-numericdates", {"iat": NOW + 0.5, "exp": NOW + 60.5}, NOW),
]


@pytest.mark.parametrize(("case", "change", "now"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_boundaries_that_are_accepted(verifier, case, change, now):
    assert _verify(verifier, _hs256({**ALL, **change})).subject == "u-alice"


def test_the_brief_signature_audience_skew_and_users_exist(keys):
    verifier = HintVerifier([_trusted("HS256")], keys["base"])  # no provider issuer at construction
    token = _hs256({**ALL, "aud": "https://op.example.com", "iat": NOW - 200, "exp": NOW - 100})
    result = verifier.verify(token, audience="https://op.example.com", now=NOW, store=SpyStore(),
                             users_exist=USERS.__contains__, skew=120)
    assert result.subject == "u-alice"
    with pytest.raises(InvalidRequest, match="expired"):
        verifier.verify(token, audience="https://op.example.com", now=NOW, store=SpyStore(),
                        users_exist=USERS.__contains__, skew=30)


# --- refusals -------------------------------------------------------------------------------------

REFUSALS = [
    ("expired", {"iat": NOW - 200, "exp": NOW - 30}, "expired"),
    ("not-yet-valid", {"iat": NOW + 31, "exp": NOW + 91}, "not yet valid"),
    ("lifetime-too-long", {"exp": NOW + 121}, "lifetime 121s exceeds the allowed 120s"),
    ("exp-before-iat", {"iat": NOW, "exp": NOW - 10}, "exp is not after iat"),
    ("wrong-aud", {"aud": "https://elsewhere"}, "aud is not this provider"),
    ("aud-list-without-op", {"aud": ["https://a", "https://b"]}, "aud is not this provider"),
    ("no-aud", {"aud": None}, "aud is not this provider"),
    ("untrusted-iss", {"iss": "https://evil.example.com"}, "is not trusted"),
    ("no-iss", {"iss": None}, "is not trusted"),
    ("unknown-sub", {"sub": "u-mallory"}, "sub does not name a known user"),
    ("no-sub", {"sub": None}, "sub is missing"),
    ("empty-sub", {"sub": ""}, "sub is missing"),
    ("numeric-sub", {"sub": 42}, "sub is missing"),
    ("no-exp", {"exp": None}, "iat and exp are required"),
    ("no-iat", {"iat": None}, "iat and exp are required"),
    ("string-exp", {"exp": str(NOW + 60)}, "iat and exp are required"),
    ("boolean-iat", {"iat": True}, "iat and exp are required"),
    ("no-jti", {"jti": None}, "jti is required"),
    ("empty-jti", {"jti": ""}, "jti is required"),
    ("numeric-jti", {"jti": 7}, "jti is required"),
    ("huge-jti", {"jti": "j" * 257}, "jti is required"),
]


@pytest.mark.parametrize(("case", "change", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_failed_check_and_spend_no_jti(verifier, case, change, message):
    store = SpyStore()
    with pytest.raises(InvalidRequest, match=message) as raised:
        _verify(verifier, _hs256({**ALL, **change}), store)
    assert raised.value.error == "invalid_request"
    assert store.calls == []


def _rs256_issuer_token(keys: dict, forge: str) -> str:
    claims = {**ALL, "iss": _issuer_for("RS256")}
    if forge == "hs256-signed-with-its-public-key":  # RFC 8725 §2.1: the classic RS256→HS256 confusion
        return _hand_signed({"alg": "HS256", "typ": "JWT"}, claims, keys["rsa_public"])
    if forge == "ps256-with-the-right-key":  # a valid signature, but not the configured alg
        return jwt.encode(claims, serialization.load_pem_private_key(keys["signing"]["rsa"], None), "PS256")
    if forge == "rs256-with-another-key":
        return jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
    if forge == "rs256-with-the-ec-issuers-key":
        return jwt.encode(claims, serialization.load_pem_private_key(keys["signing"]["ec"], None), "ES256")
    raise AssertionError(forge)


FORGERIES = [
    ("hs256-signed-with-its-public-key", "alg 'HS256' is not the configured RS256"),
    ("ps256-with-the-right-key", "alg 'PS256' is not the configured RS256"),
    ("rs256-with-another-key", "signature is invalid"),
    ("rs256-with-the-ec-issuers-key", "alg 'ES256' is not the configured RS256"),
]


@pytest.mark.parametrize(("forge", "message"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_forged_hints_for_an_rs256_issuer_are_refused(verifier, keys, forge, message):
    store = SpyStore()
    with pytest.raises(InvalidRequest, match=message):
        _verify(verifier, _rs256_issuer_token(keys, forge), store)
    assert store.calls == []


@pytest.mark.parametrize("alg_value", ["none", "None", "NONE"])
def test_alg_none_is_never_accepted(verifier, alg_value):
    header = _b64(json.dumps({"alg": alg_value, "typ": "JWT"}).encode())
    token = (header + b"." + _b64(json.dumps(ALL).encode()) + b".").decode()
    store = SpyStore()
    with pytest.raises(InvalidRequest, match="alg none"):
        _verify(verifier, token, store)
    assert store.calls == []


@pytest.mark.parametrize(("case", "secret", "alg", "message"), [
    ("hs384-to-an-hs256-issuer", SECRET, "HS384", "alg 'HS384' is not the configured HS256"),
    ("hs256-with-another-secret", b"x" * 64, "HS256", "signature is invalid"),
], ids=["hs384-to-an-hs256-issuer", "hs256-with-another-secret"])
def test_an_hmac_issuer_gets_exactly_its_alg_and_secret(verifier, case, secret, alg, message):
    with pytest.raises(InvalidRequest, match=message):
        _verify(verifier, jwt.encode(ALL, secret, algorithm=alg))


def test_a_critical_header_extension_is_refused(verifier):
    token = _hand_signed({"alg": "HS256", "crit": ["exp"], "exp": NOW}, ALL, SECRET)
    with pytest.raises(InvalidRequest):
        _verify(verifier, token)


def test_a_replayed_jti_is_refused_and_the_namespace_is_per_issuer(verifier, keys):
    store = SpyStore()
    token = _hs256(ALL)
    _verify(verifier, token, store)
    with pytest.raises(InvalidRequest, match="replay"):
        _verify(verifier, token, store)
    other = mint_hint_token(keys["signing"]["ec"], "ES256", issuer=_issuer_for("ES256"), audience=OP,
                            subject="u-alice", lifetime=60, now=NOW, jti="j")  # same jti, another issuer
    assert _verify(verifier, other, store).jti == "j"


def test_a_client_whose_policy_trusts_no_issuer(keys):
    with pytest.raises(InvalidRequest, match="trusts no issuer"):
        _verify(HintVerifier([], keys["base"], OP), _hs256(ALL))


@pytest.mark.parametrize("garbage", ["", "not.a.jwt", "a.b", "eyJhbGciOiJIUzI1NiJ9.e30", "a.b.c.d.e",
                                     "eyJhbGciOiJIUzI1NiJ9.W10.c2ln"],
                         ids=["empty", "words", "two-parts", "no-signature", "jwe-shaped", "array-payload"])
def test_garbage_is_refused(verifier, garbage):
    with pytest.raises(InvalidRequest, match="not a signed JWT"):
        _verify(verifier, garbage)


# --- keys: resolved once, and must fit -------------------------------------------------------------

def test_keys_are_resolved_once_when_the_verifier_is_built(tmp_path, keys, monkeypatch):
    (tmp_path / "rsa.pub.pem").write_bytes((keys["base"] / "rsa.pub.pem").read_bytes())
    monkeypatch.setenv("INTRANET_HINT_SECRET", SECRET.decode())
    from_env = TrustedIssuer(HS_ISS, KeyRef("env", "INTRANET_HINT_SECRET"), "HS256", 120, ("wia",))
    verifier = HintVerifier([from_env, _trusted("RS256")], tmp_path, OP)
    monkeypatch.delenv("INTRANET_HINT_SECRET")
    (tmp_path / "rsa.pub.pem").unlink()
    assert _verify(verifier, _hs256(ALL)).issuer == HS_ISS
    rs = mint_hint_token(keys["signing"]["rsa"], "RS256", issuer=_issuer_for("RS256"), audience=OP,
                         subject="u-bob", lifetime=60, now=NOW)
    assert _verify(verifier, rs).subject == "u-bob"


def test_an_absolute_key_path_and_a_private_key_file_work(tmp_path, keys):
    path = tmp_path / "ec.private.pem"
    path.write_bytes(keys["signing"]["ec"])
    trusted = TrustedIssuer(_issuer_for("ES256"), KeyRef("file", str(path)), "ES256", 120, ("hwk",))
    verifier = HintVerifier([trusted], Path("/nonexistent-base"), OP)
    token = mint_hint_token(keys["signing"]["ec"], "ES256", issuer=trusted.issuer, audience=OP,
                            subject="u-alice", lifetime=60, now=NOW)
    assert _verify(verifier, token).amr == ("hwk",)


BUILD_ERRORS = [
    ("missing-file", TrustedIssuer(HS_ISS, KeyRef("file", "missing.key"), "HS256", 120, ()), "not available"),
    ("missing-env", TrustedIssuer(HS_ISS, KeyRef("env", "POLICY_SSO_TEST_UNSET"), "HS256", 120, ()),
     "not available"),
    ("no-key", TrustedIssuer(HS_ISS, None, "HS256", 120, ()), "no usable key"),
    ("unsupported-alg", TrustedIssuer(HS_ISS, KeyRef("file", "hs.key"), "RS512", 120, ()), "no usable key"),
    ("alg-none", TrustedIssuer(HS_ISS, KeyRef("file", "hs.key"), "none", 120, ()), "no usable key"),
    ("ec-key-for-rs256", TrustedIssuer(HS_ISS, KeyRef("file", "ec.pub.pem"), "RS256", 120, ()),
     "does not fit alg RS256"),
    ("rsa-key-for-eddsa", TrustedIssuer(HS_ISS, KeyRef("file", "rsa.pub.pem"), "EdDSA", 120, ()),
     "does not fit alg EdDSA"),
    ("public-key-as-hmac-secret", TrustedIssuer(HS_ISS, KeyRef("file", "rsa.pub.pem"), "HS256", 120, ()),
     "not a PEM key"),
    ("secret-for-es256", TrustedIssuer(HS_ISS, KeyRef("file", "hs.key"), "ES256", 120, ()), "not a PEM key"),
]


@pytest.mark.parametrize(("case", "trusted", "message"), BUILD_ERRORS, ids=[b[0] for b in BUILD_ERRORS])
def test_an_unusable_key_fails_when_the_verifier_is_built(keys, monkeypatch, case, trusted, message):
    monkeypatch.delenv("POLICY_SSO_TEST_UNSET", raising=False)
    with pytest.raises(PolicySSOError, match=message):
        HintVerifier([trusted], keys["base"], OP)


def test_mint_refuses_an_unsupported_alg():
    with pytest.raises(ValueError, match="unsupported alg"):
        mint_hint_token(SECRET, "none", issuer=HS_ISS, audience=OP, subject="u", lifetime=60, now=NOW)


# --- fuzzing: nothing but InvalidRequest, and no jti for a refused token ----------------------------

@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw_-.=x"))
def test_a_mutated_token_is_refused_cleanly_or_still_valid(verifier, position, replacement):
    token = _hs256(ALL)
    position %= len(token)
    mutated = token[:position] + replacement + token[position + 1:]
    store = SpyStore()
    try:
        result = _verify(verifier, mutated, store)
    except InvalidRequest:
        assert store.calls == []
    else:  # only a change that decodes to the same bytes (base64 padding bits) can survive
        assert result.subject == "u-alice" and len(store.calls) == 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_is_an_invalid_request(verifier, text):
    store = SpyStore()
    with pytest.raises(InvalidRequest):
        _verify(verifier, text, store)
    assert store.calls == []
