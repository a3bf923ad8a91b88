"""One contract, every backend: why a session ended, kept briefly and keyed by the id's digest (issue 13)."""

from __future__ import annotations

import pytest

from policy_sso.sessions import AuthEvent, ClientJoin, Session
from policy_sso.sessions.model import (
    END_RECORD_TTL,
    SessionEnd,
    new_session,
    new_session_id,
)
from policy_sso.sessions.store import token_key

from .conftest import LIFETIME, store_url

NOW = 1_767_268_800
DAY = 86400


def make(store, at=NOW, created_for="app-a") -> Session:
    session = new_session("u-alice", (AuthEvent("pwd", at),), at, created_for)
    store.create_session(session)
    return session


def keep_alive(store, session_id: str, until: int, step: int = DAY // 2) -> None:
    """Touch the session every ``step`` seconds up to ``until``, so inactivity never ends it."""
    for t in range(NOW + step, until + 1, step):
        assert store.get_and_touch(session_id, t) is not None, t


def test_the_client_a_session_was_created_for_survives_every_update(store):
    session = make(store)
    assert store.get_session(session.id, NOW).created_for == "app-a"
    store.join_client(session.id, ClientJoin("app-b", "sid-b", NOW), NOW)
    store.grant_consent(session.id, "app-b", frozenset({"openid"}), NOW)
    moved = store.reauthenticate(session.id, AuthEvent("otp", NOW + 5), new_session_id(), NOW + 5)
    assert store.get_session(moved.id, NOW + 5).created_for == "app-a"
    legacy = Session(new_session_id(), "u-bob", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(legacy)
    assert store.get_session(legacy.id, NOW).created_for is None


@pytest.mark.parametrize("reason", ["logged_out", "ended_by_admin"])
def test_an_ended_session_says_why_until_the_record_expires(store, reason):
    session = make(store)
    assert store.session_end(session.id, NOW + 1) is None  # live: nothing ended
    store.end_session(session.id, reason, NOW + 100)
    assert store.get_session(session.id, NOW + 101) is None
    assert store.session_end(session.id, NOW + 101) == SessionEnd(reason, NOW + 100)
    assert store.session_end(session.id, NOW + 100 + END_RECORD_TTL - 1) == SessionEnd(reason, NOW + 100)
    assert store.session_end(session.id, NOW + 100 + END_RECORD_TTL) is None


def test_ending_every_session_of_a_user_records_each(store):
    first, second = make(store), make(store, NOW + 10)
    assert len(store.end_sessions_of("u-alice", "password_changed", NOW + 20)) == 2
    for session in (first, second):
        assert store.session_end(session.id, NOW + 30) == SessionEnd("password_changed", NOW + 20)


def test_unknown_and_rotated_ids_have_no_record(store):
    assert store.session_end(new_session_id(), NOW) is None
    session = make(store)
    store.reauthenticate(session.id, AuthEvent("pwd", NOW + 5), new_session_id(), NOW + 5)
    assert store.session_end(session.id, NOW + 6) is None  # moved on, not ended


def test_an_idle_session_ended_by_inactivity(store):
    session = make(store)
    assert store.get_session(session.id, NOW + DAY + 1) is None
    idle = SessionEnd("inactivity_timeout", NOW + DAY + 1, DAY)
    assert store.session_end(session.id, NOW + DAY + 1) == idle
    assert store.session_end(session.id, NOW + 2 * DAY) == idle  # asked again later: the same record
    assert store.session_end(session.id, NOW + DAY + 1 + END_RECORD_TTL) is None


def test_a_session_past_its_sliding_lifetime(store):
    session = make(store)
    keep_alive(store, session.id, NOW + 14 * DAY)
    end = NOW + 14 * DAY + 1
    assert store.get_session(session.id, end) is None
    assert store.session_end(session.id, end) == SessionEnd("session_expired", end, 14 * DAY)


def test_a_session_past_require_login_after(store):
    session = make(store)
    sid = session.id
    for day in range(1, 31):  # touched daily, re-authenticated every 10 days: only creation + 30d ends it
        if day % 10 == 0:
            sid = store.reauthenticate(sid, AuthEvent("pwd", NOW + day * DAY), new_session_id(),
                                       NOW + day * DAY).id
        else:
            assert store.get_and_touch(sid, NOW + day * DAY) is not None
    end = NOW + 30 * DAY + 1
    assert store.get_session(sid, end) is None
    assert store.session_end(sid, end) == SessionEnd("absolute_lifetime_exceeded", end, 30 * DAY)


def test_a_record_keeps_nothing_but_the_reason(store):
    end = SessionEnd("logged_out", NOW, None)
    assert SessionEnd.from_json(end.to_json()) == end
    assert set(SessionEnd("inactivity_timeout", NOW, DAY).to_json()) == {"r", "t", "l"}


def test_sweeping_an_expired_session_keeps_why(store):
    session = make(store)
    store.sweep(NOW + DAY + 5)
    assert store.session_end(session.id, NOW + DAY + 5) == SessionEnd("inactivity_timeout", NOW + DAY + 1,
                                                                       DAY)


# --- backend specifics ---------------------------------------------------------------------

def test_redis_remembers_why_after_its_own_ttl_removed_the_session(tmp_path, request):
    import redis

    from policy_sso.sessions.store import open_store

    url = store_url("redis", tmp_path, request)
    store, raw = open_store(url, LIFETIME), redis.Redis.from_url(url)
    idle, lived = make(store), make(store)
    keep_alive(store, lived.id, NOW + 14 * DAY)
    for session in (idle, lived):
        raw.delete(store._s(session.id))  # what Redis does when the session's TTL runs out
    assert store.session_end(idle.id, NOW + 2 * DAY) == SessionEnd("inactivity_timeout", NOW + DAY + 1,
                                                                   DAY)
    assert store.session_end(lived.id, NOW + 15 * DAY) == SessionEnd(
        "session_expired", NOW + 14 * DAY + 1, 14 * DAY)
    # the record is keyed by the id's digest: the id itself is nowhere in the store any more
    assert not [k for k in raw.keys("*") if idle.id.encode() in k]
    assert raw.exists(f"psso:{{sk:{token_key(idle.id)}}}:end")  # in the session's slot
    store.close()


def test_memory_keeps_a_bounded_number_of_records(monkeypatch):
    from policy_sso.sessions import memory

    monkeypatch.setattr(memory, "MAX_END_RECORDS", 3)
    store = memory.MemoryStore(LIFETIME)
    sessions = [make(store) for _ in range(5)]
    for session in sessions:
        store.end_session(session.id, "logged_out", NOW)
    kept = [store.session_end(s.id, NOW + 1) is not None for s in sessions]
    assert kept == [False, False, True, True, True]
