"""Every backend keys a session by its id's digest: no session id is ever stored in the clear.

Whoever reads the store (a database file, a backup, a Redis dump) must not
find a cookie value to sign in with (docs/security.md). The sessions a store
hands out unasked carry their key as their id, and ending them by it works.
"""

from __future__ import annotations

import sqlite3

import pytest

from policy_sso.sessions import AuthEvent, ClientJoin, Session
from policy_sso.sessions.memory import MemoryStore
from policy_sso.sessions.model import SESSION_LIMIT, SessionEnd, new_session_id
from policy_sso.sessions.store import SessionKey, StoreOptions, session_key

NOW = 1_767_268_800
DAY = 86400
LEGACY_SESSION = '{"s":"u-alice","c":AT,"l":AT,"e":[["pwd",AT]],"j":{},"g":{}}'  # codec.encode's JSON


def make(store, subject="u-alice", at=NOW, created=None) -> Session:
    session = Session(new_session_id(), subject, created or at, at, (AuthEvent("pwd", at),))
    store.create_session(session)
    return session


def persisted(store, files: bool = True) -> str:
    """Return everything the store holds, as text: every table's rows, every key and value.

    ``files``: with a SQLite store, the bytes of its files too (free pages included).
    """
    if isinstance(store, MemoryStore):
        return repr(vars(store))
    kind = type(store).__name__
    if kind == "SQLiteStore":
        with sqlite3.connect(store.path) as db:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = [repr(db.execute(f"SELECT * FROM {table}").fetchall()) for table in tables]
        # and the bytes of the file and its write-ahead log, free pages included
        paths = (store.path, store.path.with_name(store.path.name + "-wal")) if files else ()
        return "\n".join([*rows, *(path.read_bytes().decode("latin-1") for path in paths if path.exists())])
    if kind == "PostgresStore":
        with store.pool.connection() as db:
            tables = [row[0] for row in db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            return "\n".join(repr(db.execute(f"SELECT t::text FROM {table} t").fetchall())
                             for table in tables)
    assert kind == "RedisStore", kind
    client, out = store.redis, []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
                 "list": lambda k: client.lrange(k, 0, -1),
                 "zset": lambda k: client.zrange(k, 0, -1, withscores=True)}[kind](key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def test_no_session_id_is_stored_in_the_clear(open_backend):
    store = open_backend(StoreOptions(max_sessions_per_user=2))
    second, first = make(store, at=NOW - 10), make(store)
    store.get_and_touch(first.id, NOW + 120)
    store.join_client(first.id, ClientJoin("portal", "sid-1", NOW + 120), NOW + 120)
    store.grant_consent(first.id, "portal", frozenset({"openid"}), NOW + 120)
    moved = store.reauthenticate(first.id, AuthEvent("otp", NOW + 130), new_session_id(), NOW + 130)
    third = make(store, at=NOW + 140)  # pushes the oldest by creation (second) out
    store.record_session_end(second.id, SessionEnd(SESSION_LIMIT, NOW + 140))
    store.end_session(third.id, now=NOW + 150)
    assert store.session_end(third.id, NOW + 150) is not None
    bobs = make(store, subject="u-bob")
    store.end_sessions_of("u-bob", now=NOW + 160)
    # authenticated now, created long ago: require_login_after ends it at NOW + 101, recorded by sweep
    carols = make(store, subject="u-carol", created=NOW - 30 * DAY + 100)
    store.sweep(NOW + 170)
    assert store.session_end(carols.id, NOW + 170) is not None
    (alices,) = store.sessions_of("u-alice", NOW + 170)
    store.withdraw_consent(alices.id, "portal", NOW + 170)

    text = persisted(store)
    assert session_key(moved.id) in text  # the scan sees the sessions
    for session in (first, second, moved, third, bobs, carols):
        assert session.id not in text
    assert store.get_session(moved.id, NOW + 170).consents == {}


def test_a_session_handed_out_unasked_carries_its_key_and_ends_by_it(store):
    session = make(store)
    (listed,) = store.sessions_of("u-alice", NOW)
    assert isinstance(listed.id, SessionKey) and listed.id == session_key(session.id)
    assert store.get_session(session.id, NOW).id == session.id  # looked up by id: that id
    assert store.join_client(listed.id, ClientJoin("portal", "sid-1", NOW), NOW).id == listed.id
    assert store.end_session(listed.id, "ended_by_admin", NOW + 1).subject == "u-alice"
    assert store.get_session(session.id, NOW + 1) is None
    assert store.session_end(session.id, NOW + 1) == SessionEnd("ended_by_admin", NOW + 1)


def test_a_digest_is_not_an_id(store):
    # a digest read from a stolen backup, presented as a cookie, is hashed again: no session
    session = make(store)
    stolen = str(session_key(session.id))
    assert store.get_session(stolen, NOW) is None
    assert store.get_and_touch(stolen, NOW + 120) is None
    assert store.reauthenticate(stolen, AuthEvent("pwd", NOW), new_session_id(), NOW) is None
    assert store.end_session(stolen) is None
    assert store.get_session(session.id, NOW) is not None


def test_the_key_type_refuses_an_id():
    with pytest.raises(ValueError, match="SHA-256"):
        SessionKey(new_session_id())


def _put_legacy_row(store, session_id: str, at: int) -> None:
    """Write a session row the way stores did before they keyed sessions by digest (id in the clear)."""
    data = LEGACY_SESSION.replace("AT", str(at))
    hard = at + 14 * DAY + 1
    if type(store).__name__ == "SQLiteStore":
        with sqlite3.connect(store.path) as db:
            db.execute("INSERT INTO sessions (id, subject, data, last_seen, hard_expiry) "
                       "VALUES (?, ?, ?, ?, ?)", (session_id, "u-alice", data, at, hard))
    else:
        with store.pool.connection() as db:
            db.execute("INSERT INTO sessions (id, subject, created_at, data, last_seen, hard_expiry) "
                       "VALUES (%s, %s, %s, %s, %s, %s)", (session_id, "u-alice", at, data, at, hard))


def test_a_session_stored_by_id_before_the_upgrade_is_not_found_and_is_swept(store):
    if type(store).__name__ not in ("SQLiteStore", "PostgresStore"):
        pytest.skip("a table keyed by session id: SQLite and PostgreSQL")
    old = new_session_id()
    _put_legacy_row(store, old, NOW)
    new = make(store, at=NOW + 1)
    assert store.get_session(old, NOW + 1) is None
    assert store.get_and_touch(old, NOW + 200) is None
    assert store.session_end(old, NOW + 1) is None
    assert store.end_session(old) is None
    assert [s.id for s in store.sessions_of("u-alice", NOW + 1)] == [session_key(new.id)]
    assert [s.id for s in store.end_sessions_of("u-alice", now=NOW + 2)] == [session_key(new.id)]
    assert old in persisted(store, files=False)
    assert store.sweep(NOW + DAY + 1) == 1  # gone when it expires (inactivity), its id with it
    assert old not in persisted(store, files=False)
