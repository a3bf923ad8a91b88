"""Credentials users present: argon2id password hashes (RFC 9106) and TOTP codes (RFC 6238)."""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import contextlib
import functools
import hmac
import os
import re
import threading

import pyotp
from argon2 import PasswordHasher

from policy_sso.errors import OAuthError

# argon2id with argon2-cffi's defaults (RFC 9106 §4 second recommended option: t=3, m=64 MiB, p=4)
_hasher = PasswordHasher()

TOTP_STEP = 30  # RFC 6238 §4.1: X, the time step, 30 seconds by default (§5.2)
TOTP_DIGITS = 6
MIN_TOTP_SECRET_BITS = 128  # RFC 4226 §4 R6 (RFC 6238 §5.1 keeps it): 160 recommended
_CODE_RE = re.compile(rf"[0-9]{{{TOTP_DIGITS}}}")  # ASCII only: str.isdigit() admits fullwidth digits


def hash_password(password: str) -> str:
    """Return an argon2id hash of ``password`` (PHC string format) for users.yaml."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Return whether ``password`` matches the argon2 hash; False, never an exception, for a garbled hash."""
    if not isinstance(password_hash, str | bytes) or not isinstance(password, str | bytes):
        return False
    try:
        return _hasher.verify(password_hash, password)
    except Exception:  # mismatch, invalid hash, unsupported parameters: all mean "no" to a sign-in
        return False


@functools.cache
def _dummy_hash() -> str:
    # made on first use, not at import: the CLI imports this module and must start quickly
    return _hasher.hash("policy-sso: a password nobody has")


def verify_unknown_user(password: str) -> bool:
    """Spend the time of one real verification and return False (no user enumeration by timing)."""
    verify_password(_dummy_hash(), password)
    return False


class HashingBusy(OAuthError):
    """Every hashing slot stayed taken through the wait: 503, try again shortly."""

    error = "temporarily_unavailable"
    status = 503

    def __init__(self) -> None:
        super().__init__("the server is busy checking other sign-ins; try again in a moment",
                         headers={"Retry-After": "1"})


def default_hash_slots() -> int:
    """Return the hashing slots for a machine: one less than its CPUs, at least 1.

    A password check is ~0.2 s of one CPU (argon2id, 64 MiB) and runs without
    the interpreter lock; keeping a CPU free of hashing keeps silent sign-in
    (a few ms of Python) on time while a flood of logins is being checked.
    """
    return max(1, (os.cpu_count() or 1) - 1)


HASHING_NICENESS = 10  # how much lower than request handling hashes run (Linux: per-thread nice)


def _lower_priority() -> None:
    # Linux schedules threads individually: this thread's hashes yield the CPU to the threads
    # answering requests (a silent sign-in is a few ms of Python). Elsewhere it is a no-op.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class HashGate:
    """Bounds how many password hashes run at once; a check that cannot start in time is refused.

    A flood of sign-ins with new usernames (each one a full hash, so that an
    unknown user costs what a known one does) would otherwise take every CPU
    and every worker thread. Hashes run in ``slots`` threads of their own at
    a lower CPU priority; the request's thread waits for its result.
    """

    def __init__(self, slots: int = 0, wait: float = 0.0) -> None:
        self.slots = slots or default_hash_slots()
        self.wait = wait
        self._slots = threading.BoundedSemaphore(self.slots)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.slots, "argon2", _lower_priority)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Return whether ``password`` matches (a None hash: an unknown user, spent and False).

        Raise HashingBusy when no slot frees up within ``wait`` seconds.
        """
        if not self._slots.acquire(timeout=self.wait):
            raise HashingBusy()
        try:
            if password_hash is None:
                return self._pool.submit(verify_unknown_user, password).result()
            return self._pool.submit(verify_password, password_hash, password).result()
        finally:
            self._slots.release()


def totp_secret_bits(secret: str) -> int | None:
    """Return the bit length of a base32 TOTP secret (decoded as pyotp does), or None if not base32."""
    try:
        return 8 * len(base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True))
    except (binascii.Error, ValueError):
        return None


def totp_now(secret: str, now: int) -> str:
    """Return the TOTP code of base32 ``secret`` at ``now`` (RFC 6238 §4: SHA-1, 30 s steps, 6 digits)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).at(now)


def totp_earliest_use(now: int, window: int = 1) -> int:
    """Return the earliest moment a code valid at ``now`` (``window`` steps of drift) may have been used.

    A code valid now belongs to one of the steps within ``window`` of the
    current one, and the earliest of those was valid from ``window`` steps
    before its own: so from the start of the step ``2 * window`` before now.
    """
    return (now // TOTP_STEP - 2 * window) * TOTP_STEP


def verify_totp(secret: str, code: str, now: int, window: int = 1) -> bool:
    """Return whether ``code`` is valid at ``now`` within ``window`` steps of drift (RFC 6238 §5.2).

    Every candidate step is compared in constant time, whether or not an
    earlier one matched. A malformed code or an unusable secret is False.
    Replay (§5.2: a code is accepted once) is the caller's to record.
    """
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        return False
    try:
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
        candidates = [totp.at(now + step * TOTP_STEP) for step in range(-window, window + 1)]
    except (ValueError, TypeError):  # not base32, or shorter than pyotp's 112-bit minimum
        return False
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), code.encode())
    return matched
