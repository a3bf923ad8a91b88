"""Signing keys (SPEC §4 /jwks): 0600 PEMs made once, RFC 7638 kids, rollover (OIDC Core §10.1.1), joserfc."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from pathlib import Path

import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from policy_sso.errors import PolicySSOError
from policy_sso.oidc.interaction import load_or_create_key
from policy_sso.oidc.keys import (
    CLOCK_MARGIN,
    JWKS_MAX_AGE,
    PUBLISH_AHEAD,
    RESCAN_INTERVAL,
    KeyRing,
    SigningKeyError,
    create_key,
    thumbprint,
    thumbprint_of,
)

# joserfc warns that RFC 9864 deprecates the name "EdDSA"; SPEC §4 and discovery still use it
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
ALGS = ["RS256", "ES256", "EdDSA"]
T0 = 1_800_000_000
KTY = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"))


def _joserfc_claims(ring: KeyRing, token: str, alg: str) -> dict:
    return jose_jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=[alg]).claims


def test_first_start_makes_one_key_per_alg_with_private_modes(tmp_path):
    KeyRing.load_or_create(tmp_path)
    files = sorted((tmp_path / "keys").glob("*.pem"))
    assert [f.name for f in files] == ["ES256.0001.pem", "EdDSA.0001.pem", "RS256.0001.pem"]
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def test_a_restart_reuses_the_keys(tmp_path):
    first = KeyRing.load_or_create(tmp_path)
    again = KeyRing.load_or_create(tmp_path)
    assert again.jwks() == first.jwks()
    assert [again.signing_key(a)[0] for a in ALGS] == [first.signing_key(a)[0] for a in ALGS]


def test_rs256_is_always_made_even_when_not_asked_for(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, ("ES256",))
    assert set(ring.algorithms) == {"RS256", "ES256"}


@pytest.mark.parametrize("alg", ALGS)
def test_each_key_is_the_asked_type_and_its_kid_is_the_rfc7638_thumbprint(ring, alg):
    jwk = next(k for k in ring.jwks()["keys"] if k["alg"] == alg)
    kty, crv = KTY[alg]
    assert (jwk["kty"], jwk.get("crv"), jwk["use"]) == (kty, crv, "sig")
    assert "key_ops" not in jwk  # RFC 7517 §4.3: use or key_ops, not both
    if kty == "RSA":
        assert len(base64.urlsafe_b64decode(jwk["n"] + "==")) * 8 == 2048
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[kty]
    canonical = "{" + ",".join(f'"{k}":"{jwk[k]}"' for k in required) + "}"
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == expected == thumbprint(jwk) == ring.signing_key(alg)[0]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)  # never a private member in the JWKS


def test_rfc7638_section_3_1_example_thumbprint():
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
           "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
                "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
                "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ALGS)
def test_sign_puts_kid_and_typ_in_the_header_and_joserfc_verifies(ring, alg):
    token = ring.sign({"sub": "u-alice"}, alg, typ="at+jwt")
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"], header["typ"]) == (alg, ring.signing_key(alg)[0], "at+jwt")
    assert _joserfc_claims(ring, token, alg) == {"sub": "u-alice"}
    assert jwt.get_unverified_header(ring.sign({}, alg))["typ"] == "JWT"


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "PS256", "ES384", ""])
def test_only_rs256_es256_eddsa_sign(ring, tmp_path, alg):
    with pytest.raises(SigningKeyError):
        ring.sign({"sub": "u"}, alg)
    with pytest.raises(SigningKeyError):
        ring.rotate(alg)
    with pytest.raises(SigningKeyError):
        KeyRing.load_or_create(tmp_path, ("RS256", alg))
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


def test_rotation_keeps_old_keys_published_and_signs_with_the_new_once_caches_hold_it(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    old_token = ring.sign({"sub": "a", "iat": T0}, "RS256")
    old_kid, _ = ring.signing_key("RS256", T0)
    new = ring.rotate("RS256", now=T0 + 10)
    assert new.kid != old_kid and new.published == T0 + 10
    kids = [k["kid"] for k in ring.jwks(T0 + 10)["keys"]]
    assert kids == [old_kid, new.kid]  # published at once, the signing key first
    assert ring.signing_key("RS256", T0 + 10 + PUBLISH_AHEAD - 1)[0] == old_kid
    assert ring.signing_key("RS256", T0 + 10 + PUBLISH_AHEAD)[0] == new.kid
    assert [k["kid"] for k in ring.jwks(T0 + 10 + PUBLISH_AHEAD)["keys"]] == [new.kid, old_kid]
    assert _joserfc_claims(ring, old_token, "RS256")["sub"] == "a"
    later = ring.sign({"sub": "b", "iat": T0 + 10 + PUBLISH_AHEAD}, "RS256")
    assert jwt.get_unverified_header(later)["kid"] == new.kid
    assert _joserfc_claims(ring, later, "RS256")["sub"] == "b"
    assert stat.S_IMODE((tmp_path / "keys" / "RS256.0002.pem").stat().st_mode) == 0o600
    reloaded = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0 + 20)
    assert reloaded.signing_key("RS256", T0 + 20)[0] == old_kid  # the publication time is shared
    assert reloaded.signing_key("RS256", T0 + 10 + PUBLISH_AHEAD)[0] == new.kid


def test_the_cache_lifetime_is_within_the_publication_lead():
    assert PUBLISH_AHEAD >= JWKS_MAX_AGE + RESCAN_INTERVAL


@pytest.mark.parametrize("lifetime", [600, 3600])
def test_an_old_key_stays_published_until_every_token_it_signed_expired(tmp_path, lifetime):
    ring = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0, token_lifetime=lifetime)
    old_kid = ring.signing_key("RS256", T0)[0]
    new = ring.rotate("RS256", now=T0)
    switch = T0 + PUBLISH_AHEAD
    last_old_token = ring.sign({"iat": switch - 1, "exp": switch - 1 + lifetime}, "RS256")
    assert jwt.get_unverified_header(last_old_token)["kid"] == old_kid
    assert old_kid in {k["kid"] for k in ring.jwks(switch - 1 + lifetime)["keys"]}
    assert old_kid in {k["kid"] for k in ring.jwks(switch + lifetime + CLOCK_MARGIN - 1)["keys"]}
    assert [k["kid"] for k in ring.jwks(switch + lifetime + CLOCK_MARGIN)["keys"]] == [new.kid]


def test_a_key_never_published_does_not_sign_after_a_restart(tmp_path):
    first = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    old_kid = first.signing_key("RS256", T0)[0]
    create_key(tmp_path / "keys", "RS256")  # `keys rotate` while no server runs
    restarted = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0 + 5000)
    new_kid = next(k["kid"] for k in restarted.jwks(T0 + 5000)["keys"] if k["kid"] != old_kid)
    assert restarted.signing_key("RS256", T0 + 5000)[0] == old_kid
    assert restarted.signing_key("RS256", T0 + 5000 + PUBLISH_AHEAD)[0] == new_kid


def test_instances_on_one_state_directory_converge(tmp_path):
    a = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    b = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    new = a.rotate("RS256", now=T0 + 100)
    # b notices the key within RESCAN_INTERVAL without being told, with a's publication time
    assert a.jwks(T0 + 100 + RESCAN_INTERVAL) == b.jwks(T0 + 100 + RESCAN_INTERVAL)
    for moment in (T0 + 100 + PUBLISH_AHEAD - 1, T0 + 100 + PUBLISH_AHEAD, T0 + 100 + 2 * PUBLISH_AHEAD):
        assert a.signing_key("RS256", moment)[0] == b.signing_key("RS256", moment)[0]
        assert a.jwks(moment) == b.jwks(moment)
    assert b.signing_key("RS256", T0 + 100 + PUBLISH_AHEAD)[0] == new.kid


def test_a_token_signed_with_a_key_not_yet_loaded_is_verified_after_a_look_at_the_directory(tmp_path):
    a = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    b = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    new = a.rotate("RS256", now=T0)
    token = a.sign({"sub": "x", "iat": T0 + PUBLISH_AHEAD}, "RS256")
    assert jwt.get_unverified_header(token)["kid"] == new.kid
    assert b.verify(token, options={"verify_iat": False})["sub"] == "x"


def test_reload_loads_rotated_keys_and_makes_keys_for_newly_configured_algorithms(tmp_path):
    ring = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    path = create_key(tmp_path / "keys", "RS256")
    ring.reload(("RS256", "ES256"), token_lifetime=900, now=T0 + 1)
    assert ring.token_lifetime == 900
    assert {k["alg"] for k in ring.jwks(T0 + 1)["keys"]} == {"RS256", "ES256"}
    assert (tmp_path / "keys" / f"{path.stem}.published").read_text().strip() == str(T0 + 1)


def test_keys_from_before_publication_markers_keep_signing(tmp_path):
    keys = tmp_path / "keys"
    KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    newest = create_key(keys, "RS256")
    for marker in keys.glob("*.published"):
        marker.unlink()  # a state directory from before the markers
    ring = KeyRing.load_or_create(tmp_path, ("RS256",), now=T0)
    assert ring.signing_key("RS256", T0)[0] == thumbprint_of(newest, "RS256")
    assert len(ring.jwks(T0 + 10**6)["keys"]) == 2  # when the older one stopped signing is unknown: kept


def test_keys_are_loaded_once_and_never_read_again(tmp_path, monkeypatch):
    ring = KeyRing.load_or_create(tmp_path)
    kids = {a: ring.signing_key(a)[0] for a in ALGS}

    def no_disk(*args, **kwargs):
        raise AssertionError("a key file was read after start")

    monkeypatch.setattr(Path, "read_bytes", no_disk)
    monkeypatch.setattr(Path, "open", no_disk)
    for alg in ALGS:
        assert jwt.get_unverified_header(ring.sign({"n": 1}, alg))["kid"] == kids[alg]
        assert ring.signing_key(alg)[1] is ring.signing_key(alg)[1]  # the same cached object


def test_jwks_cannot_be_changed_through_a_returned_copy(ring):
    published = ring.jwks()
    published["keys"][0]["kid"] = "tampered"
    published["keys"].clear()
    assert ring.jwks()["keys"] and all(k["kid"] != "tampered" for k in ring.jwks()["keys"])


def test_two_instances_starting_together_share_one_key_per_alg(tmp_path):
    barrier = threading.Barrier(4)
    rings: list[KeyRing] = []

    def start() -> None:
        barrier.wait()
        rings.append(KeyRing.load_or_create(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rings) == 4
    assert len({tuple(r.signing_key(a)[0] for a in ALGS) for r in rings}) == 1
    assert sorted(p.name for p in (tmp_path / "keys").iterdir() if p.suffix != ".published") == \
        ["ES256.0001.pem", "EdDSA.0001.pem", "RS256.0001.pem"]  # no temporary file left behind
    assert len({r.jwks(T0)["keys"][0]["kid"] for r in rings}) == 1


def test_a_key_file_readable_by_others_is_made_private(tmp_path):
    KeyRing.load_or_create(tmp_path, ("RS256",))
    path = tmp_path / "keys" / "RS256.0001.pem"
    os.chmod(path, 0o644)
    KeyRing.load_or_create(tmp_path, ("RS256",))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("name", "content"), [("RS256.0001.pem", b""), ("RS256.0001.pem", b"not a pem"),
                                               ("ES256.0001.pem", "rsa")],
                         ids=["empty-file", "garbage", "rsa-key-named-es256"])
def test_a_broken_key_file_is_a_signing_key_error(tmp_path, name, content):
    if content == "rsa":
        KeyRing.load_or_create(tmp_path, ("RS256",))
        content = (tmp_path / "keys" / "RS256.0001.pem").read_bytes()
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    (keys / name).write_bytes(content)
    (keys / name).chmod(0o600)
    with pytest.raises(SigningKeyError, match=name.replace(".", r"\.")):
        KeyRing.load_or_create(tmp_path)


def test_simultaneous_first_starts_read_one_whole_interaction_key(tmp_path):
    path = tmp_path / "state" / "interaction.key"
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def start() -> None:
        barrier.wait()
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and len(keys[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["interaction.key"]  # no temporary file left


def test_an_empty_interaction_key_is_an_error_not_a_key(tmp_path):
    path = tmp_path / "interaction.key"
    path.write_bytes(b"")
    with pytest.raises(PolicySSOError, match="0 bytes"):
        load_or_create_key(path)
