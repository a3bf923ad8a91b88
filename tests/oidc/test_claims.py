"""The claims request parameter (OIDC Core §5.5): what each member asks for, and what a user releases."""

from __future__ import annotations

import pytest

from policy_sso.config import User
from policy_sso.errors import InvalidRequest
from policy_sso.oidc.claims import (
    NO_CLAIMS,
    ClaimsRequest,
    parse_claims_request,
    requested_claims,
    subject_value,
    supported_claims,
)
from policy_sso.request import MAX_JSON_DEPTH

ALICE = User("u-alice", "alice", "x", claims={"name": "Alice", "department": "Research", "iss": "forged"})


@pytest.mark.parametrize("text,expected", [
    (None, NO_CLAIMS),
    ("", NO_CLAIMS),
    ('{"userinfo": {"name": {"essential": true}, "department": null}}',
     ClaimsRequest(("name", "department"))),
    ('{"id_token": {"email": {"value": "a@b"}, "acr": {"values": ["x"]}, "auth_time": null}}',
     ClaimsRequest((), ("email",))),
    ('{"userinfo": null, "id_token": {}, "other_member": {"x": null}}', NO_CLAIMS),
], ids=["none", "empty", "userinfo_essential_and_null", "id_token_protocol_claims_left_out", "empty_members"])
def test_parse(text: str | None, expected: ClaimsRequest) -> None:
    assert parse_claims_request(text) == expected


@pytest.mark.parametrize("text", ["[]", '{"userinfo": 1}', '{"id_token": {"name": true}}',
                                  '{"userinfo": {"name": {"values": {}}}}',
                                  '{"userinfo": {"name": {"essential": 1}}}', '{"userinfo": NaN}',
                                  "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)],
                         ids=["array", "member_number", "claim_bool", "values_object", "essential_number",
                              "nan", "too_deep"])
def test_malformed_is_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_claims_request(text)


def test_released_claims_are_the_users_own_and_never_protocol_ones() -> None:
    assert requested_claims(ALICE, ("name", "department", "nickname", "iss", "preferred_username")) == {
        "name": "Alice", "department": "Research", "preferred_username": "alice"}


def test_sub_value_and_supported_claims() -> None:
    assert subject_value('{"id_token": {"sub": {"value": "u-bob"}}}') == "u-bob"
    assert subject_value('{"userinfo": {"sub": {"value": "u-bob"}}}') is None
    assert subject_value('{"id_token": {"sub": {"value": 1}}}') is None
    names = supported_claims([ALICE])
    assert "department" in names and "email" in names and "iss" not in names
