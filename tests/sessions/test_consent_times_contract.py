"""One contract, every backend: a consent grant records when it was given (issue 19)."""

from __future__ import annotations

import json

from policy_sso.sessions import AuthEvent, Session
from policy_sso.sessions.codec import decode, encode
from policy_sso.sessions.model import new_session_id

NOW = 1_767_268_800


def make(store, subject="u-alice", at=NOW) -> Session:
    session = Session(new_session_id(), subject, at, at, (AuthEvent("pwd", at),))
    store.create_session(session)
    return session


def test_a_grant_records_its_time(store):
    session = make(store)
    got = store.grant_consent(session.id, "portal", frozenset({"openid", "profile"}), NOW + 5)
    assert got.consent_times == {"portal": {"openid": NOW + 5, "profile": NOW + 5}}
    again = store.get_session(session.id, NOW + 6)
    assert again.consent_times == {"portal": {"openid": NOW + 5, "profile": NOW + 5}}
    assert again.consent_granted_at("portal", "profile") == NOW + 5


def test_granting_again_replaces_the_old_grant_time_and_keeps_the_others(store):
    session = make(store)
    store.grant_consent(session.id, "portal", frozenset({"openid", "profile"}), NOW + 5)
    store.grant_consent(session.id, "portal", frozenset({"profile"}), NOW + 50)
    store.grant_consent(session.id, "docs", frozenset({"openid"}), NOW + 60)
    got = store.get_session(session.id, NOW + 61)
    assert got.consents == {"portal": frozenset({"openid", "profile"}), "docs": frozenset({"openid"})}
    assert got.consent_times == {"portal": {"openid": NOW + 5, "profile": NOW + 50},
                                 "docs": {"openid": NOW + 60}}
    assert got.consent_since("portal", frozenset({"openid", "profile"})) == NOW + 5


def test_withdrawing_drops_the_grant_times(store):
    session = make(store)
    store.grant_consent(session.id, "portal", frozenset({"openid"}), NOW + 5)
    store.grant_consent(session.id, "docs", frozenset({"openid"}), NOW + 5)
    store.withdraw_consent(session.id, "portal", NOW + 6)
    got = store.get_session(session.id, NOW + 7)
    assert got.consents == {"docs": frozenset({"openid"})}
    assert got.consent_times == {"docs": {"openid": NOW + 5}}


def test_a_session_stored_before_grant_times_decodes_with_grants_from_its_creation():
    # the JSON a store held before issue 19: consents as lists, no "gt"
    old = json.dumps({"s": "u-alice", "c": NOW - 100, "l": NOW, "e": [["pwd", NOW - 100]],
                      "j": {}, "g": {"portal": ["openid", "profile"]}})
    session = decode("sid", old)
    assert session.consents == {"portal": frozenset({"openid", "profile"})}
    assert session.consent_times == {}
    assert session.consent_granted_at("portal", "openid") == NOW - 100  # the earliest it can have been
    # and a new session's encoding still carries "g", so an older reader finds the scopes
    granted = session.with_consent("portal", frozenset({"email"}), NOW)
    data = json.loads(encode(granted))
    assert sorted(data["g"]["portal"]) == ["email", "openid", "profile"]
    assert data["gt"] == {"portal": {"email": NOW}}
    assert decode("sid", encode(granted)).consent_times == {"portal": {"email": NOW}}
