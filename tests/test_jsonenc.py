"""policy_sso.jsonenc: compact UTF-8 JSON, the same document the standard library writes."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_sso import jsonenc

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@given(JSON_VALUES)
def test_it_writes_what_json_reads_back_the_same(value: object) -> None:
    text = jsonenc.dumps(value)
    assert isinstance(text, bytes)
    assert json.loads(text) == value


def test_a_claims_set_is_json_compact_and_utf8() -> None:
    claims = {"iss": "https://op.example", "name": "Zoë", "amr": ("pwd", "otp"), "exp": 1_800_000_000}
    assert jsonenc.dumps(claims) == json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()


def test_what_orjson_refuses_the_standard_library_writes() -> None:
    big = {"n": 2**70, 3: "int key"}
    assert json.loads(jsonenc.dumps(big)) == {"n": 2**70, "3": "int key"}


@pytest.mark.parametrize("value", [dataclasses.make_dataclass("D", ["a"])(1), datetime.date(2026, 1, 1),
                                   {1, 2}])
def test_what_json_refuses_is_still_refused(value: object) -> None:
    with pytest.raises(TypeError):
        jsonenc.dumps(value)
