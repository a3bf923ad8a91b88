"""Unpadded base64url (RFC 4648 §5; RFC 7515 §2): the encoding of JWTs, PKCE, codes and sealed values.

One implementation for every module that needs it, on ``binascii`` directly:
the ``base64`` module's url-safe functions are three Python calls and two
translations each, and a token exchange encodes or decodes about a dozen
values.
"""

from __future__ import annotations

import binascii

_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")


def encode(data: bytes) -> str:
    """Return ``data`` as unpadded base64url text."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def encode_bytes(data: bytes) -> bytes:
    """Return ``data`` as unpadded base64url, ASCII bytes (a JWS segment)."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=")


def decode(text: str) -> bytes:
    """Return the bytes of base64url ``text``, padded or not, as ``base64.urlsafe_b64decode`` reads it.

    Lenient as that is: characters outside the alphabet are skipped, and
    spare bits are ignored. Raises ValueError (``binascii.Error`` is one) for
    text that is not ASCII or whose length no padding can mend.
    """
    data = text.encode("ascii").translate(_FROM_URL)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def canonical_decode(text: str) -> bytes | None:
    """Return the bytes unpadded base64url ``text`` encodes, None unless it is their one spelling.

    The lenient decoder skips stray characters and padding and ignores spare
    bits, so one value has many spellings; where each would be another
    identifier (a single-use code in the store), only the one spelling counts.
    """
    try:
        raw = decode(text)
    except ValueError:
        return None
    return raw if encode(raw) == text else None
