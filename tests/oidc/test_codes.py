"""Authorization codes: the grant sealed into the code, unreadable and unalterable without the key."""

from __future__ import annotations

import base64
import os

import pytest

from policy_sso.oidc.codes import CodeGrant, CodeSealer
from policy_sso.oidc.grant import Grant

NOW = 1_767_268_800
GRANT = Grant("u-alice", "portal", "openid profile", NOW - 30, "urn:acr:mfa", ("pwd", "otp"), "sid-1",
              "nonce-\u00e9\"<x>")
SEALED = CodeGrant(GRANT, "http://127.0.0.1:9001/callback?x=1", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                   NOW + 60)


@pytest.fixture
def sealer() -> CodeSealer:
    return CodeSealer(os.urandom(32))


def test_a_code_opens_to_what_was_sealed_until_it_expires(sealer):
    code = sealer.seal(SEALED)
    assert sealer.open(code, NOW) == SEALED
    assert sealer.open(code, NOW + 59) == SEALED
    assert sealer.open(code, NOW + 60) is None


def test_a_grant_without_optional_parts_round_trips(sealer):
    bare = CodeGrant(Grant("u-bob", "docs", "openid"), "https://docs.example/cb", None, NOW + 60)
    assert sealer.open(sealer.seal(bare), NOW) == bare


def test_codes_are_url_safe_distinct_and_reveal_nothing(sealer):
    codes = {sealer.seal(SEALED) for _ in range(100)}
    assert len(codes) == 100  # a random nonce each time
    for code in codes:
        assert set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        raw = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
        for secret in (b"u-alice", b"sid-1", b"nonce", b"callback", b"portal"):
            assert secret not in raw


@pytest.mark.parametrize("position", [0, 5, 16, 40, -1])
def test_an_altered_code_does_not_open(sealer, position):
    code = sealer.seal(SEALED)
    chars = list(code)
    chars[position] = "A" if chars[position] != "A" else "B"
    assert sealer.open("".join(chars), NOW) is None


@pytest.mark.parametrize("garbage", ["", "x", "====", "not a code!", "A" * 43, "é" * 20, "A" * 5000])
def test_garbage_does_not_open(sealer, garbage):
    assert sealer.open(garbage, NOW) is None


@pytest.mark.parametrize("respell", [lambda c: c + "=", lambda c: c + "==", lambda c: c[:10] + "!" + c[10:],
                                     lambda c: c + "\n"],
                         ids=["padding", "double-padding", "stray-char", "newline"])
def test_only_the_one_spelling_of_a_code_opens(sealer, respell):
    # base64 decoders skip stray characters and spare bits: a second spelling that opened would
    # be a second store identifier for the same code, so a second redemption
    code = sealer.seal(SEALED)
    assert sealer.open(respell(code), NOW) is None


@pytest.mark.parametrize("nonce", ["n", "nn", "nnn"])  # sealed lengths of every residue mod 3
def test_a_code_has_no_spare_bits_to_respell(sealer, nonce):
    grant = CodeGrant(Grant("u", "portal", "openid", nonce=nonce), "https://a.example/cb", None, NOW + 60)
    code = sealer.seal(grant)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert [c for c in alphabet if sealer.open(code[:-1] + c, NOW)] == [code[-1]]


def test_another_key_cannot_open_a_code(sealer):
    assert CodeSealer(os.urandom(32)).open(sealer.seal(SEALED), NOW) is None
    assert sealer.open(sealer.seal(SEALED)[:-4], NOW) is None  # truncated


def test_what_a_redemption_issues_is_stable_per_code(sealer):
    one, two = sealer.seal(SEALED), sealer.seal(SEALED)
    assert sealer.issued(one) == sealer.issued(one)
    (jti, family), (other_jti, other_family) = sealer.issued(one), sealer.issued(two)
    assert len({jti, family, other_jti, other_family}) == 4
    assert all(len(base64.urlsafe_b64decode(x + "==")) == 16 for x in (jti, family))
    assert CodeSealer(os.urandom(32)).issued(one) != sealer.issued(one)


def test_store_keys_order_by_expiry_and_never_hold_the_code(sealer):
    early = CodeGrant(GRANT, SEALED.redirect_uri, None, NOW + 60)
    late = CodeGrant(GRANT, SEALED.redirect_uri, None, NOW + 61)
    keys = [sealer.used_key(sealer.seal(g), g) for g in (late, early, late)]
    assert sorted(keys)[0] == keys[1]
    assert len(set(keys)) == 3
    code = sealer.seal(early)
    assert code not in sealer.used_key(code, early)


def test_nonces_never_repeat_and_a_forked_child_starts_its_own_sequence(sealer):
    def nonce(code: str) -> bytes:
        return base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))[:12]

    mine = {nonce(sealer.seal(SEALED)) for _ in range(1000)}
    assert len(mine) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: seal a few codes and report their nonces
        os.close(read)
        os.write(write, b"".join(nonce(sealer.seal(SEALED)) for _ in range(10)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read()
    os.waitpid(pid, 0)
    child = {theirs[i:i + 12] for i in range(0, len(theirs), 12)}
    assert len(child) == 10
    after = {nonce(sealer.seal(SEALED)) for _ in range(10)}
    assert not child & (mine | after)
    assert {n[:4] for n in child}.isdisjoint({n[:4] for n in mine})  # a prefix of its own
