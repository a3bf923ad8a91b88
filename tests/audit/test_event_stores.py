"""The store sink on every backend: filters, bounded pages, keyset pagination, retention (issue 15)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from policy_sso.audit.event import EVENT_TYPES, AuditEvent, ReasonRecord
from policy_sso.audit.query import MAX_LIMIT, Cursor, EventQuery, parse_query
from policy_sso.audit.stores import (
    SQLITE_SCHEMA,
    EventStore,
    MemoryEventStore,
    PostgresEventStore,
    RedisEventStore,
    SQLiteEventStore,
    open_event_store,
)
from policy_sso.errors import InvalidRequest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "audit-event.schema.json").read_text())
T0 = 1_800_000_000
_serial = iter(range(10**9))


def record(type_: str = "authorization.decision", time: int = T0, **fields: object) -> tuple[dict, str]:
    """Return a stored record (JSON object and line) of an event, with a unique id."""
    data = AuditEvent(type_, time, f"test-{next(_serial):010d}", **fields).to_json()  # type: ignore[arg-type]
    return data, json.dumps(data)


@pytest.fixture(params=["memory", "sqlite", "redis", "redis_cluster", "postgres"])
def events(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "memory":
        store: EventStore = MemoryEventStore()
    elif request.param == "sqlite":
        store = SQLiteEventStore(tmp_path / "store.db")
    elif request.param == "postgres":
        store = open_event_store(request.getfixturevalue("postgres_url"))
        assert isinstance(store, PostgresEventStore)
        with store.pool.connection() as db:
            db.execute("TRUNCATE audit_events")
    else:  # the stream is one key: on a cluster, one slot
        store = open_event_store(request.getfixturevalue(f"{request.param}_url"))
        assert isinstance(store, RedisEventStore)
        store.redis.delete(store.key)
    yield store
    store.close()


def all_pages(events: EventStore, query: EventQuery) -> list[list[dict]]:
    pages, cursor = [], None
    for _ in range(1000):
        page = events.query(EventQuery(query.subject, query.client, query.type, query.since, query.until,
                                       query.limit, Cursor.decode(cursor) if cursor else None))
        pages.append(page.events)
        cursor = page.next_cursor
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


def test_an_event_matches_its_schema_and_never_carries_secret_details() -> None:
    reason = ReasonRecord("mfa_required", "policies/payments.policy:10", "mfa", "session amr pwd")
    data = AuditEvent("authorization.decision", T0, "x1", "interaction_required", "payments-web", "u-alice",
                      "0" * 32, "r-1", "127.0.0.1", "curl", "/authorize", (reason,),
                      {"silent": True, "password": "wonderland", "code": "abc"}).to_json()
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == 1 and data["timestamp"] == "2027-01-15T08:00:00Z"
    assert data["reasons"] == [{"code": "mfa_required", "source": "policies/payments.policy:10",
                                "required": "mfa", "observed": "session amr pwd"}]
    assert data["details"] == {"silent": True}


def test_every_registered_type_fits_the_schema() -> None:
    for kind in EVENT_TYPES:
        jsonschema.validate(AuditEvent(kind, T0, "id").to_json(), SCHEMA)


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param({"subject": "u-alice"}, {"a1", "a2", "a3"}, id="subject"),
    pytest.param({"client": "payments-web"}, {"a1", "b1"}, id="client"),
    pytest.param({"type": "sign_in.success"}, {"a2"}, id="type"),
    pytest.param({"type": "logout.*"}, {"a3", "b2"}, id="type-prefix"),
    pytest.param({"since": T0 + 100}, {"a2", "a3", "b2"}, id="since"),
    pytest.param({"until": T0 + 100}, {"a1", "a2", "b1"}, id="until"),
    pytest.param({"subject": "u-alice", "client": "payments-web", "since": T0, "until": T0}, {"a1"},
                 id="all-together"),
])
def test_filters(events: EventStore, filters: dict, expected: set[str]) -> None:
    rows = [("a1", "authorization.decision", T0, "u-alice", "payments-web"),
            ("b1", "authorization.decision", T0 + 1, "u-bob", "payments-web"),
            ("a2", "sign_in.success", T0 + 100, "u-alice", None),
            ("a3", "logout.rp_initiated", T0 + 200, "u-alice", "portal"),
            ("b2", "logout.admin", T0 + 300, "u-bob", None)]
    events.write([(d, json.dumps(d)) for d in (
        {**AuditEvent(t, time, i, "", client, subject).to_json()} for i, t, time, subject, client in rows)])
    page = events.query(EventQuery(**filters))
    assert {e["id"] for e in page.events} == expected
    times = [e["time"] for e in page.events]
    assert times == sorted(times, reverse=True)  # newest first


def test_pages_cover_every_event_once_newest_first(events: EventStore) -> None:
    written = [record(time=T0 + i // 7) for i in range(103)]  # several events share each second
    events.write(written)
    pages = all_pages(events, EventQuery(limit=10))
    assert [len(p) for p in pages] == [10] * 10 + [3]
    seen = [e["id"] for page in pages for e in page]
    assert sorted(seen) == sorted(d["id"] for d, _ in written) and len(set(seen)) == 103
    keys = [(e["time"], e["id"]) for page in pages for e in page]
    assert keys == sorted(keys, reverse=True)


def test_pagination_is_stable_while_events_are_written(events: EventStore) -> None:
    first = [record(time=T0 + i // 3) for i in range(60)]
    events.write(first)
    seen: list[str] = []
    cursor = None
    for n in range(100):
        page = events.query(EventQuery(limit=7, cursor=Cursor.decode(cursor) if cursor else None))
        seen += [e["id"] for e in page.events]
        # newer events arrive between page reads (the same second as the newest, and later)
        events.write([record(time=T0 + 19 + n // 2), record(time=T0 + 20 + n)])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [d["id"] for d, _ in sorted(first, key=lambda r: (r[0]["time"], r[0]["id"]), reverse=True)]


def test_retention_prunes_older_events(events: EventStore) -> None:
    events.write([record(time=T0), record(time=T0 + 10), record(time=T0 + 86400)])
    events.prune(T0 + 11)
    assert [e["time"] for e in events.query(EventQuery()).events] == [T0 + 86400]


@pytest.mark.parametrize(("params", "message"), [
    pytest.param({"limit": "0"}, "limit", id="limit-zero"),
    pytest.param({"limit": str(MAX_LIMIT + 1)}, "limit", id="limit-over-max"),
    pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
    pytest.param({"since": "yesterday"}, "since", id="since-unreadable"),
    pytest.param({"cursor": "bm90IGEgY3Vyc29y"}, "cursor", id="cursor-forged"),
    pytest.param({"type": "DROP TABLE"}, "type", id="type-malformed"),
    pytest.param({"sort": "asc"}, "unknown parameter", id="unknown-parameter"),
])
def test_bad_query_parameters_are_invalid_requests(params: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_query(params, T0)


def test_query_parameters() -> None:
    query = parse_query({"subject": "u-alice", "since": "-1d", "until": str(T0), "limit": "500",
                         "type": "logout.*"}, T0)
    assert (query.subject, query.since, query.until, query.limit, query.type) == (
        "u-alice", T0 - 86400, T0, 500, "logout.*")
    assert parse_query({}, T0).limit == 50
    assert Cursor.decode(Cursor(T0, "abc-01").encode()) == Cursor(T0, "abc-01")


def test_sqlite_events_have_a_file_of_their_own_and_take_no_session_write_lock(tmp_path: Path) -> None:
    from policy_sso.sessions.model import SessionLifetime
    from policy_sso.sessions.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/policy-sso.db", SessionLifetime())
    events = SQLiteEventStore(store.path)
    assert events.path == tmp_path / "policy-sso-audit.db"
    held = sqlite3.connect(events.path, isolation_level=None)
    held.execute("BEGIN IMMEDIATE")  # the audit writer in the middle of a batch
    try:
        assert store.use_jti("code", "j1", T0 + 60, T0)  # a session write does not wait for it
    finally:
        held.execute("ROLLBACK")
        held.close()
    events.close()
    store.close()


def test_sqlite_events_an_earlier_version_kept_in_the_session_file_move_once(tmp_path: Path) -> None:
    session_file = tmp_path / "policy-sso.db"
    old = sqlite3.connect(session_file, isolation_level=None)
    old.executescript(SQLITE_SCHEMA)
    rows = [record(time=T0 + i) for i in range(5)]
    old.executemany("INSERT INTO audit_events (id, time, type, subject, client, outcome, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(d["id"], d["time"], d["type"], d.get("subject"), d.get("client"), d.get("outcome"),
                      line) for d, line in rows])
    old.close()
    first = SQLiteEventStore(session_file)
    second = SQLiteEventStore(session_file)  # another worker starting: nothing twice, nothing lost
    page = second.query(EventQuery(limit=50))
    assert sorted(e["id"] for e in page.events) == sorted(d["id"] for d, _ in rows)
    tables = sqlite3.connect(session_file).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert "audit_events" not in {name for (name,) in tables}
    first.close()
    second.close()


def _open_events(path: Path, barrier: object) -> str:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        SQLiteEventStore(path).close()
    except Exception as err:  # reported to the test, not raised in the child
        return repr(err)
    return "ok"


def test_workers_starting_together_all_open_a_new_sqlite_events_file(tmp_path: Path) -> None:
    # serve --workers: every worker creates the audit file at once; turning it to WAL is not waited for
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(3) as pool:
        for trial in range(20):  # without the retry, about a quarter of such starts failed
            barrier = manager.Barrier(3)
            path = tmp_path / f"t{trial}" / "policy-sso.db"
            assert pool.starmap(_open_events, [(path, barrier)] * 3) == ["ok"] * 3
