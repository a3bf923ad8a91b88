"""Every backend keeps where a session was signed in from; sessions stored before it still decode."""

from __future__ import annotations

import json

from policy_sso.sessions import AuthEvent, ClientJoin, Session, codec
from policy_sso.sessions.model import Device, new_session, new_session_id

NOW = 1_767_268_800
LAPTOP = Device("192.0.2.10", "Firefox on Linux")
PHONE = Device("2001:db8::7", "Safari on iOS")


def test_the_device_survives_every_update(store):
    session = new_session("u-alice", (AuthEvent("pwd", NOW),), NOW, "app-a", LAPTOP)
    store.create_session(session)
    assert store.get_session(session.id, NOW).device == LAPTOP
    store.join_client(session.id, ClientJoin("app-b", "sid-b", NOW), NOW)
    store.grant_consent(session.id, "app-b", frozenset({"openid"}), NOW)
    store.touch_session(session.id, NOW + 120)
    assert store.get_session(session.id, NOW + 120).device == LAPTOP
    kept = store.reauthenticate(session.id, AuthEvent("otp", NOW + 130), new_session_id(), NOW + 130)
    assert store.get_session(kept.id, NOW + 130).device == LAPTOP  # no device given: the recorded one stays
    assert [s.device for s in store.sessions_of("u-alice", NOW + 130)] == [LAPTOP]


def test_a_reauthentication_records_where_it_came_from(store):
    session = new_session("u-alice", (AuthEvent("pwd", NOW),), NOW, "app-a", LAPTOP)
    store.create_session(session)
    moved = store.reauthenticate(session.id, AuthEvent("pwd", NOW + 5), new_session_id(), NOW + 5, PHONE)
    assert moved.device == PHONE
    assert store.get_session(moved.id, NOW + 5).device == PHONE
    assert store.end_session(moved.id, now=NOW + 6).device == PHONE


def test_a_session_without_a_device_is_kept_without_one(store):
    legacy = Session(new_session_id(), "u-bob", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(legacy)
    assert store.get_session(legacy.id, NOW).device is None
    moved = store.reauthenticate(legacy.id, AuthEvent("otp", NOW + 5), new_session_id(), NOW + 5)
    assert moved.device is None


def test_a_session_stored_before_devices_were_recorded_still_decodes():
    """The JSON an earlier release wrote (no ``d``, no ``o``) decodes with no device."""
    old = json.dumps({"s": "u-alice", "c": NOW, "l": NOW + 5, "e": [["pwd", NOW]],
                      "j": {"app-a": ["sid-a", NOW]}, "g": {"app-a": ["openid"]}})
    session = codec.decode("sid-1", old)
    assert session.device is None and session.created_for is None
    assert session.clients["app-a"].sid == "sid-a" and session.amr == ("pwd",)


def test_the_codec_round_trips_the_device():
    session = new_session("u-alice", (AuthEvent("pwd", NOW),), NOW, "app-a", PHONE)
    assert codec.decode(session.id, codec.encode(session)) == session
    assert "d" not in json.loads(codec.encode(Session("x", "u", NOW, NOW, ())))
