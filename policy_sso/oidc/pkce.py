"""Proof Key for Code Exchange (RFC 7636), S256 only.

``plain`` is not offered (RFC 9700 §2.1.1), and since a request without
``code_challenge_method`` means ``plain`` (RFC 7636 §4.3) it is refused too,
as node-oidc-provider does, rather than silently read as S256.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from policy_sso import b64url
from policy_sso.errors import InvalidRequest

# §4.1: code_verifier = 43*128unreserved; §4.2: an S256 challenge is 43 base64url characters.
# Used with fullmatch: "$" would also accept a trailing newline.
VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")
METHODS = ("S256",)


def s256(verifier: str) -> str:
    """Return BASE64URL(SHA256(ASCII(verifier))) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return b64url.encode(digest)


def validate_challenge(challenge: str | None, method: str | None) -> None:
    """Raise InvalidRequest unless the request's PKCE parameters are a well-formed S256 pair (§4.3, §4.4.1).

    Neither parameter means no PKCE (whether it is required is the caller's
    rule, e.g. for public clients). A challenge without a method asks for
    ``plain`` (§4.3), which this server does not support (§4.4.1).
    """
    if challenge is None and method is None:
        return
    if method != "S256":
        if not method:
            raise InvalidRequest("code_challenge_method is required and must be S256 (no plain)")
        raise InvalidRequest("code_challenge_method must be S256")
    if not challenge:
        raise InvalidRequest("code_challenge_method without code_challenge")
    if not isinstance(challenge, str) or not CHALLENGE_RE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 base64url characters (S256)")


def verify_s256(verifier: str | None, challenge: str) -> bool:
    """Return whether ``verifier`` is well formed (§4.1) and matches the S256 ``challenge`` (§4.6).

    The comparison is constant time and made on bytes, so a stored challenge
    with unexpected characters is a mismatch, never an exception.
    """
    if not isinstance(verifier, str) or not VERIFIER_RE.fullmatch(verifier):
        return False
    if not isinstance(challenge, str):
        return False
    return hmac.compare_digest(s256(verifier).encode("ascii"), challenge.encode("utf-8", "replace"))
