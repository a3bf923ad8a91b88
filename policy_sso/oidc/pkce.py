"""Proof Key for Code Exchange (RFC 7636), S256 only (RFC 9700 §2.1.1: plain is not offered)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from policy_sso.errors import InvalidRequest

# RFC 7636 §4.1: code_verifier = 43*128unreserved; §4.2: S256 challenge = 43 base64url chars
VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
METHODS = ("S256",)


def s256(verifier: str) -> str:
    """Return BASE64URL(SHA256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validate_challenge(challenge: str | None, method: str | None) -> None:
    """Raise InvalidRequest unless ``challenge`` is a well-formed S256 challenge (RFC 7636 §4.3)."""
    if method not in (None, "", "S256"):
        raise InvalidRequest("code_challenge_method must be S256")
    if method and not challenge:
        raise InvalidRequest("code_challenge_method without code_challenge")
    if challenge is not None and not CHALLENGE_RE.match(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters (S256)")


def verify_s256(verifier: str | None, challenge: str) -> bool:
    """Return whether ``verifier`` matches the S256 ``challenge``, compared in constant time (§4.6)."""
    if not verifier or not VERIFIER_RE.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
