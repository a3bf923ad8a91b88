"""DPoP proofs (RFC 9449 §4.3): each check refuses its own kind of bad proof; proofs made with joserfc."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from policy_sso.config import DpopSettings
from policy_sso.oidc import dpop

pytestmark = [pytest.mark.filterwarnings("ignore:EdDSA is deprecated"),  # joserfc: RFC 9864 renames EdDSA
              pytest.mark.filterwarnings("ignore:Key size should be")]  # the 1024-bit key is the point
NOW = 1_800_000_000
URL = "https://op.example/token"
EC = ECKey.generate_key("P-256")
OTHER = ECKey.generate_key("P-256")
DEFAULTS = DpopSettings()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof(key: Any = EC, *, alg: str = "ES256", typ: str = "dpop+jwt", jwk: Any = None,
          signer: Any = None, **claims: Any) -> str:
    body = {"htm": "POST", "htu": URL, "iat": NOW, "jti": "j-1", **claims}
    header = {"typ": typ, "alg": alg, "jwk": jwk if jwk is not None else key.as_dict(private=False)}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, signer or key,
                      algorithms=[alg])


class Spent:
    """The store's use_jti, in memory: True the first time a key is recorded."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def __call__(self, key: str, expires_at: int) -> bool:
        assert expires_at > NOW
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


def verify(token: str | None, *, now: int = NOW, settings: DpopSettings = DEFAULTS,
           spent: Spent | None = None, **kw: Any) -> dpop.Proof:
    return dpop.verify_proof(token, method=kw.pop("method", "POST"), url=kw.pop("url", URL), now=now,
                             settings=settings, use_jti=spent or Spent(), **kw)


@pytest.mark.parametrize("key,alg", [(EC, "ES256"), (OKPKey.generate_key("Ed25519"), "EdDSA"),
                                     (RSAKey.generate_key(2048), "RS256"),
                                     (RSAKey.generate_key(2048), "PS256")],
                         ids=["ES256", "EdDSA", "RS256", "PS256"])
def test_a_good_proof_gives_the_keys_rfc7638_thumbprint(key: Any, alg: str) -> None:
    assert verify(proof(key, alg=alg)).jkt == key.thumbprint()


def _unsigned(alg: str, jwk: Any = None, signature: str = "") -> str:
    """Return a proof joserfc would not make: refused before its signature is looked at."""
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": EC.as_dict(private=False) if jwk is None else jwk}
    body = {"htm": "POST", "htu": URL, "iat": NOW, "jti": "x"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}.{signature}"


BAD = [
    ("missing", lambda: None, "invalid_dpop_proof"),
    ("not_a_jwt", lambda: "a.b", "invalid_dpop_proof"),
    ("two_proofs", lambda: proof() + "," + proof(), "invalid_dpop_proof"),
    ("typ_jwt", lambda: proof(typ="JWT"), "invalid_dpop_proof"),
    ("alg_none", lambda: _unsigned("none"), "invalid_dpop_proof"),
    ("alg_hs256", lambda: proof(alg="HS256", signer=OctKey.generate_key(256)), "invalid_dpop_proof"),
    ("private_key_in_header", lambda: proof(jwk=EC.as_dict(private=True)), "invalid_dpop_proof"),
    ("no_jwk", lambda: _unsigned("ES256", jwk="x", signature="c2ln"), "invalid_dpop_proof"),
    ("signed_by_another_key", lambda: proof(jwk=OTHER.as_dict(private=False)), "invalid_dpop_proof"),
    ("rsa_1024", lambda: proof(RSAKey.generate_key(1024, auto_kid=False), alg="RS256"), "invalid_dpop_proof"),
    ("key_type_not_alg", lambda: _unsigned("RS256", signature="c2ln"), "invalid_dpop_proof"),
    ("other_method", lambda: proof(htm="GET"), "invalid_dpop_proof"),
    ("other_url", lambda: proof(htu="https://op.example/userinfo"), "invalid_dpop_proof"),
    ("other_host", lambda: proof(htu="https://evil.example/token"), "invalid_dpop_proof"),
    ("no_jti", lambda: proof(jti=None), "invalid_dpop_proof"),
    ("too_old", lambda: proof(iat=NOW - 61), "invalid_dpop_proof"),
    ("in_the_future", lambda: proof(iat=NOW + 60), "invalid_dpop_proof"),
    ("iat_string", lambda: proof(iat=str(NOW)), "invalid_dpop_proof"),
]


@pytest.mark.parametrize("make,error", [(m, e) for _, m, e in BAD], ids=[i for i, _, _ in BAD])
def test_a_bad_proof_is_refused(make: Any, error: str) -> None:
    with pytest.raises(dpop.InvalidDpopProof) as caught:
        verify(make())
    assert caught.value.error == error and caught.value.status == 400


def test_htu_compares_scheme_and_host_case_blind_and_ignores_the_query() -> None:
    assert verify(proof(htu="HTTPS://OP.example/token?x=1")).jkt == EC.thumbprint()


def test_a_proof_made_before_the_store_lost_its_records_is_stale() -> None:
    # its replay record may have gone with the rest (Store.intact_since: a Redis restarted empty)
    with pytest.raises(dpop.InvalidDpopProof, match="older than the server's records"):
        verify(proof(jti="before", iat=NOW - 5), intact_since=lambda: NOW - 4)
    assert verify(proof(jti="after", iat=NOW - 4), intact_since=lambda: NOW - 4).iat == NOW - 4


def test_a_proof_works_once_and_a_refused_one_is_not_spent() -> None:
    spent = Spent()
    with pytest.raises(dpop.InvalidDpopProof):
        verify(proof(jti="once", htm="GET"), spent=spent)
    good = proof(jti="once")
    verify(good, spent=spent)
    with pytest.raises(dpop.InvalidDpopProof, match="already used"):
        verify(good, spent=spent)


def test_ath_must_hash_the_access_token_at_a_resource() -> None:
    token = "eyJ.access.token"
    ath = dpop.access_token_hash(token)
    assert verify(proof(ath=ath), access_token=token).jkt
    for wrong in (None, dpop.access_token_hash("another")):
        with pytest.raises(dpop.InvalidDpopProof, match="ath"):
            verify(proof(ath=wrong, jti=f"j-{wrong}"), access_token=token)


def test_an_algorithm_left_out_of_the_tenants_list_is_refused() -> None:
    with pytest.raises(dpop.InvalidDpopProof, match="alg"):
        verify(proof(), settings=DpopSettings(algorithms=("EdDSA",)))


def test_server_nonces_when_the_tenant_asks_for_them() -> None:
    settings = DpopSettings(nonce=True)

    def mac(text: str) -> str:
        return _b64(text.encode())

    with pytest.raises(dpop.UseDpopNonce) as caught:
        verify(proof(), settings=settings, nonce_mac=mac)
    nonce = caught.value.headers[dpop.NONCE_HEADER]
    assert caught.value.error == "use_dpop_nonce"
    assert verify(proof(nonce=nonce, jti="n1"), settings=settings, nonce_mac=mac).jkt
    # the previous slot's nonce is still good; two slots back is not
    later = NOW + dpop.NONCE_SLOT
    assert verify(proof(nonce=nonce, jti="n2", iat=later), now=later, settings=settings, nonce_mac=mac)
    much_later = NOW + 2 * dpop.NONCE_SLOT
    with pytest.raises(dpop.UseDpopNonce):
        verify(proof(nonce=nonce, jti="n3", iat=much_later), now=much_later, settings=settings,
               nonce_mac=mac)


def test_binding_refuses_bearer_use_and_another_key() -> None:
    bound = {"cnf": {"jkt": EC.thumbprint()}}
    dpop.check_binding({}, None)  # a plain bearer token as a bearer token
    dpop.check_binding(bound, dpop.Proof(EC.thumbprint(), "j"))
    with pytest.raises(Exception, match="DPoP scheme") as bearer:
        dpop.check_binding(bound, None)
    assert bearer.value.error == "invalid_token" and bearer.value.status == 401
    with pytest.raises(Exception, match="not bound"):
        dpop.check_binding(bound, dpop.Proof(OTHER.thumbprint(), "j"))


def test_a_proof_spent_at_one_instance_is_refused_at_another_sharing_the_store(tmp_path: Any) -> None:
    from pathlib import Path

    from policy_sso.oidc.keys import KeyRing
    from policy_sso.oidc.provider import Provider
    from policy_sso.oidc.token_endpoint import dpop_proof_of
    from policy_sso.sessions.store import open_store
    from policy_sso.tenant import load_tenant

    tenant = load_tenant(Path(__file__).resolve().parents[2] / "policies")
    store = open_store(f"sqlite:///{tmp_path}/shared.db", tenant.settings.lifetime)
    ring = KeyRing.load_or_create(tmp_path / "keys", tenant.settings.tokens.algorithms)
    first, second = (Provider.build(tenant, store, ring, b"k" * 32) for _ in range(2))
    shared = proof(htu=tenant.settings.issuer + "/token", jti="shared")
    assert dpop_proof_of(first, shared, "/token", NOW).jkt == EC.thumbprint()
    with pytest.raises(dpop.InvalidDpopProof, match="already used"):
        dpop_proof_of(second, shared, "/token", NOW)
    store.close()
