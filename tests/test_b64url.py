"""policy_sso.b64url against the standard library's base64 (RFC 4648 §5, unpadded)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_sso import b64url


@given(st.binary(max_size=200))
def test_encoding_is_the_standard_librarys_without_padding(data: bytes) -> None:
    expected = base64.urlsafe_b64encode(data).rstrip(b"=")
    assert b64url.encode_bytes(data) == expected
    assert b64url.encode(data) == expected.decode()
    assert b64url.decode(b64url.encode(data)) == data
    assert b64url.canonical_decode(b64url.encode(data)) == data


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(alphabet=ALPHABET + "=+/!. ", max_size=60))
def test_decoding_reads_what_the_standard_library_reads(text: str) -> None:
    try:
        expected = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        with pytest.raises(ValueError):
            b64url.decode(text)
        return
    assert b64url.decode(text) == expected


@pytest.mark.parametrize(("spelling", "value"), [
    ("YWJj=", b"abc"), ("YWJ j", b"abc"), ("YW.Jj", b"abc"), ("YWJj\n", b"abc"),
    ("YR", b"a"),  # spare bits set: "YQ" is the one spelling of b"a"
])
def test_only_the_one_spelling_is_canonical(spelling: str, value: bytes) -> None:
    assert b64url.decode(spelling) == value  # the lenient decoder reads every spelling alike
    assert b64url.canonical_decode(spelling) is None
    assert b64url.canonical_decode(b64url.encode(value)) == value


def test_non_ascii_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        b64url.decode("YWJj\u00e9")
    assert b64url.canonical_decode("YWJj\u00e9") is None
