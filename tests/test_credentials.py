"""Passwords (argon2) and TOTP (RFC 6238)."""

from __future__ import annotations

import pytest

from policy_sso.credentials import hash_password, totp_now, verify_password, verify_totp, verify_unknown_user

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, as RFC 4226 §4 recommends
NOW = 1_767_268_800


def test_password_round_trip_and_mismatch():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horsE")


@pytest.mark.parametrize("garbled", ["", "not a hash", "$argon2id$v=19$m=1$zz", "$2b$12$bcrypt"],
                         ids=["empty", "text", "truncated-argon2", "bcrypt"])
def test_a_garbled_hash_is_a_mismatch_not_an_error(garbled):
    assert verify_password(garbled, "anything") is False


def test_unknown_users_cost_a_verification_and_fail():
    assert verify_unknown_user("anything") is False


def test_rfc6238_vector_at_59_seconds():
    # RFC 6238 Appendix B, SHA-1, 8 digits: 94287082 at T=59; our 6-digit code is its last six digits
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # base32 of "12345678901234567890"
    assert totp_now(secret, 59) == "287082"


@pytest.mark.parametrize(("offset", "valid"), [(0, True), (-30, True), (30, True), (-60, False), (60, False)],
                         ids=["now", "one-step-early", "one-step-late", "two-steps-early", "two-steps-late"])
def test_totp_window(offset, valid):
    assert verify_totp(SECRET, totp_now(SECRET, NOW + offset), NOW) is valid


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12345 "],
                         ids=["empty", "5", "7", "letters", "space"])
def test_malformed_codes_fail(code):
    assert not verify_totp(SECRET, code, NOW)
