"""Credentials users present: argon2 password hashes and TOTP codes (RFC 6238)."""

from __future__ import annotations

import hmac

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory defaults
_DUMMY_HASH = _hasher.hash("policy-sso: a password nobody has")

TOTP_STEP = 30
TOTP_DIGITS = 6


def hash_password(password: str) -> str:
    """Return an argon2id hash of ``password`` for users.yaml."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches the hash; never raises on a garbled hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError, TypeError):
        return False


def verify_unknown_user(password: str) -> bool:
    """Spend the time of one real verification and return False (no user enumeration by timing)."""
    verify_password(_DUMMY_HASH, password)
    return False


def totp_now(secret: str, now: int) -> str:
    """Return the TOTP code of ``secret`` at ``now`` (RFC 6238, 30 s steps, 6 digits)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).at(now)


def verify_totp(secret: str, code: str, now: int, window: int = 1) -> bool:
    """Return whether ``code`` is valid at ``now`` within ``window`` steps of drift (RFC 6238 §5.2)."""
    if not code or not code.isdigit() or len(code) != TOTP_DIGITS:
        return False
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    matched = False
    for step in range(-window, window + 1):  # compare every candidate: constant time in the match
        matched |= hmac.compare_digest(totp.at(now + step * TOTP_STEP), code)
    return matched
