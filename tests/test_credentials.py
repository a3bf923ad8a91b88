"""Passwords (argon2id, RFC 9106) and TOTP (RFC 6238)."""

from __future__ import annotations

import os
import threading

import pytest
from argon2 import PasswordHasher

from policy_sso import credentials
from policy_sso.credentials import (
    HashGate,
    HashingBusy,
    default_hash_slots,
    hash_password,
    totp_now,
    verify_password,
    verify_totp,
    verify_unknown_user,
)

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, as RFC 4226 §4 recommends
RFC6238_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of the SHA-1 seed "12345678901234567890"
NOW = 1_767_268_800


@pytest.fixture(scope="module")
def hashed() -> str:
    return hash_password("correct horse")


def test_hash_is_argon2id_with_the_production_parameters(hashed):
    # RFC 9106 §4's second recommended option, argon2-cffi's default: m=64 MiB, t=3, p=4
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert hash_password("correct horse") != hashed  # a fresh salt each time


@pytest.mark.parametrize(("password", "ok"), [("correct horse", True), ("correct horsE", False), ("", False),
                                              ("correct horse ", False)],
                         ids=["right", "one-letter-off", "empty", "trailing-space"])
def test_verify_password(hashed, password, ok):
    assert verify_password(hashed, password) is ok


GARBLED = [("empty", ""), ("text", "not a hash"), ("truncated-argon2", "$argon2id$v=19$m=1$zz"),
           ("bcrypt", "$2b$12$" + "a" * 53), ("none", None), ("number", 5),
           ("bad-base64-hash", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$!!!!")]


@pytest.mark.parametrize("garbled", [g for _, g in GARBLED], ids=[i for i, _ in GARBLED])
def test_a_garbled_hash_is_a_mismatch_not_an_error(garbled):
    assert verify_password(garbled, "anything") is False


def test_a_hash_made_with_other_parameters_still_verifies():
    other = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(other, "pw") and not verify_password(other, "px")


def test_unknown_users_cost_one_real_verification_and_fail(monkeypatch):
    calls: list[tuple[str, str]] = []
    real = credentials._hasher

    class Spy:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, password_hash: str, password: str) -> bool:
            calls.append((password_hash, password))
            return real.verify(password_hash, password)

    monkeypatch.setattr(credentials, "_hasher", Spy())
    assert verify_unknown_user("anything") is False
    (used_hash, password), = calls
    assert password == "anything" and used_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


# RFC 6238 Appendix B, SHA-1 rows: 8-digit values; a 6-digit code is the value mod 10**6 (RFC 4226 §5.3)
RFC6238_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                   (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]


@pytest.mark.parametrize(("at", "value"), RFC6238_VECTORS, ids=[str(t) for t, _ in RFC6238_VECTORS])
def test_rfc6238_appendix_b_vectors(at, value):
    assert totp_now(RFC6238_SECRET, at) == value[-6:]
    assert verify_totp(RFC6238_SECRET, value[-6:], at, window=0)


WINDOW = [("now", 0, True), ("one-step-early", -30, True), ("one-step-late", 30, True),
          ("two-steps-early", -60, False), ("two-steps-late", 60, False)]


@pytest.mark.parametrize(("offset", "valid"), [w[1:] for w in WINDOW], ids=[w[0] for w in WINDOW])
def test_totp_window_of_one_step(offset, valid):
    assert verify_totp(SECRET, totp_now(SECRET, NOW + offset), NOW) is valid


def test_a_zero_window_takes_only_the_current_step():
    assert verify_totp(SECRET, totp_now(SECRET, NOW), NOW, window=0)
    assert not verify_totp(SECRET, totp_now(SECRET, NOW - 30), NOW, window=0)


def test_step_boundaries_to_the_second():
    step_start = NOW - NOW % 30
    code = totp_now(SECRET, step_start)
    assert totp_now(SECRET, step_start + 29) == code != totp_now(SECRET, step_start + 30)
    assert verify_totp(SECRET, code, step_start + 59, window=1)
    assert not verify_totp(SECRET, code, step_start + 60, window=1)


MALFORMED = [("empty", ""), ("five-digits", "12345"), ("seven-digits", "1234567"), ("letters", "abcdef"),
             ("trailing-space", "12345 "), ("fullwidth-digits", "\uff11\uff12\uff13\uff14\uff15\uff16"),
             ("arabic-indic-digits", "\u0663" * 6), ("superscripts", "\u00b2" * 6), ("none", None),
             ("int", 123456)]


@pytest.mark.parametrize("code", [m for _, m in MALFORMED], ids=[i for i, _ in MALFORMED])
def test_malformed_codes_fail_without_raising(code):
    assert verify_totp(SECRET, code, NOW) is False


@pytest.mark.parametrize("secret", ["not base32!", "JBSWY3DPEHPK3PXP", ""],
                         ids=["not-base32", "80-bit-too-short-for-pyotp", "empty"])
def test_an_unusable_secret_is_a_mismatch_not_an_error(secret):
    assert verify_totp(secret, "123456", NOW) is False


# --- the hashing gate: a bound on concurrent argon2 ------------------------------------------

def test_the_gate_checks_passwords_and_spends_a_hash_on_unknown_users():
    gate = HashGate(slots=1, wait=5)
    stored = hash_password("correct horse")
    assert gate.verify(stored, "correct horse") is True
    assert gate.verify(stored, "wrong") is False
    assert gate.verify(None, "anything") is False


def test_a_check_that_cannot_get_a_slot_in_time_is_refused_with_503():
    gate = HashGate(slots=1, wait=0.05)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate._slots:  # another request's hash, in progress
            started.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        started.wait(5)
        with pytest.raises(HashingBusy) as busy:
            gate.verify(hash_password("x"), "x")
    finally:
        release.set()
        holder.join(5)
    assert busy.value.status == 503 and busy.value.error == "temporarily_unavailable"
    assert busy.value.headers == {"Retry-After": "1"}
    assert gate.verify(None, "x") is False  # the slot is free again


def test_the_default_leaves_a_cpu_free_of_hashing():
    assert default_hash_slots() == max(1, (os.cpu_count() or 1) - 1)
    assert HashGate().slots == default_hash_slots()
