"""What only the Redis store has: a server-side script cache and a subject index that TTLs outrun."""

from __future__ import annotations

import redis

from policy_sso.sessions import AuthEvent, Session, open_store
from policy_sso.sessions.model import new_session_id
from policy_sso.sessions.store import session_key

from .conftest import LIFETIME, store_url

NOW = 1_767_268_800


def make(store, subject: str = "u-alice") -> Session:
    session = Session(new_session_id(), subject, NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    return session


def test_get_and_touch_survives_a_flushed_script_cache(tmp_path, request):
    url = store_url("redis", tmp_path, request)
    store = open_store(url, LIFETIME)
    session = make(store)
    redis.Redis.from_url(url).script_flush()  # as after a server restart
    assert store.get_and_touch(session.id, NOW + LIFETIME.touch_interval).id == session.id
    assert store.get_session(session.id, NOW + 61).last_seen == NOW + LIFETIME.touch_interval
    store.close()


def test_the_subject_index_forgets_sessions_whose_ttl_ran_out(tmp_path, request):
    url = store_url("redis", tmp_path, request)
    store, raw = open_store(url, LIFETIME), redis.Redis.from_url(url)
    gone = make(store)
    raw.delete(store._s(gone.id))  # what Redis does when the session's TTL runs out
    kept = make(store)
    # a read drops dead ones
    assert [s.id for s in store.sessions_of("u-alice", NOW)] == [session_key(kept.id)]
    assert raw.zrange("psso:uz:u-alice", 0, -1) == [session_key(kept.id).encode()]
    assert [s.id for s in store.end_sessions_of("u-alice")] == [session_key(kept.id)]
    assert not raw.exists("psso:uz:u-alice")
    store.close()


def test_sessions_stored_before_keys_were_digests_are_not_found_and_their_ids_go(tmp_path, request):
    # earlier layouts indexed a subject's sessions by id in the clear (a plain set, then a sorted
    # set) and stored each under "psso:{s:<digest>}": after the upgrade they are not found (their
    # users sign in again), and the ids in the indexes go at the next read of them
    url = store_url("redis", tmp_path, request)
    store, raw = open_store(url, LIFETIME), redis.Redis.from_url(url)
    old, older = new_session_id(), new_session_id()
    stored = '{"s":"u-alice","c":AT,"l":AT,"e":[["pwd",AT]],"j":{},"g":{}}'.replace("AT", str(NOW))
    raw.set(f"psso:{{s:{session_key(old)}}}", f"{NOW:011d}{NOW + 86400:011d}{stored}", ex=86400)
    raw.zadd("psso:uz:u-alice", {old: 1})
    raw.sadd("psso:u:u-alice", older)
    new = make(store)
    assert store.get_session(old, NOW) is None
    assert [s.id for s in store.sessions_of("u-alice", NOW)] == [session_key(new.id)]
    assert not raw.exists("psso:u:u-alice")
    assert raw.zrange("psso:uz:u-alice", 0, -1) == [session_key(new.id).encode()]
    assert [s.id for s in store.end_sessions_of("u-alice")] == [session_key(new.id)]
    store.close()


def test_get_and_touch_is_one_round_trip_even_when_it_touches(tmp_path, request, monkeypatch):
    url = store_url("redis", tmp_path, request)
    store = open_store(url, LIFETIME)
    session = make(store)
    store.get_and_touch(session.id, NOW)  # loads the script into the server's cache
    commands: list[str] = []
    send = store.redis.execute_command
    monkeypatch.setattr(store.redis, "execute_command",
                        lambda *args, **options: commands.append(args[0]) or send(*args, **options))
    assert store.get_and_touch(session.id, NOW + 1).last_seen == NOW  # no touch due
    assert store.get_and_touch(session.id, NOW + LIFETIME.touch_interval).last_seen == NOW  # touches
    # no touch can be due before last-seen + touch_interval: a plain GET; then the script
    assert commands == ["GET", "EVALSHA"]
    assert store.get_session(session.id, NOW + LIFETIME.touch_interval).last_seen == NOW + 60
    store.close()


def test_a_touch_by_another_instance_is_not_missed(tmp_path, request):
    # what one store saw can only be older than what is stored: its plain GETs never skip a due touch
    url = store_url("redis", tmp_path, request)
    one, other = open_store(url, LIFETIME), open_store(url, LIFETIME)
    session = make(one)
    one.get_and_touch(session.id, NOW)
    other.get_and_touch(session.id, NOW + 90)  # another instance touches: last-seen NOW + 90
    assert one.get_and_touch(session.id, NOW + 100).last_seen == NOW + 90  # read as stored, no touch
    assert one.get_and_touch(session.id, NOW + 150).last_seen == NOW + 90  # due: touches
    assert one.get_session(session.id, NOW + 150).last_seen == NOW + 150
    idle = NOW + 150 + LIFETIME.inactivity + 1
    assert one.get_and_touch(session.id, idle) is None
    one.close()
    other.close()
