"""The store sink: audit events kept in the session store's backend, queryable, pruned by age.

Each backend has its own class that opens its own connection from the store
URL, so the session stores stay as they are:

- SQLite: a table ``audit_events`` in a database file of its own beside the
  session store's (``policy-sso-audit.db`` beside ``policy-sso.db``), indexed
  for the queries admins run (by time, and by subject, client or type over
  time). Its own file has its own write lock: a batch of events being written
  never makes a sign-in wait for the session store;
- Redis: a capped stream (``XADD ... MAXLEN ~``) whose entry ids follow the
  events' times, so retention is one ``XTRIM MINID``;
- PostgreSQL: a table ``audit_events`` in the same database, indexed as SQLite's;
- memory: a bounded deque (tests and demos; gone with the process).

Every backend pages newest first with a keyset cursor (:mod:`policy_sso.audit.query`).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time as _time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from policy_sso.audit.query import Cursor, EventPage, EventQuery
from policy_sso.errors import InvalidRequest, StoreError
from policy_sso.sessions.sqlite import wal_mode

MEMORY_CAP = 10000

# An event's JSON object and its JSON line. The object is None for a sink whose ``wants_json`` is
# False (it reads the lines only); every store sink reads it.
Record = tuple[dict[str, Any] | None, str]


class EventStore(Protocol):
    """What each backend of the store sink implements."""

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch of events."""

    def query(self, query: EventQuery) -> EventPage:
        """Return one page of matching events, newest first."""

    def prune(self, before: int) -> int:
        """Delete events older than ``before`` (epoch seconds); return how many (where known)."""

    def ping(self) -> None:
        """Raise when the backend does not answer (``/readyz`` asks after a failed write)."""

    def close(self) -> None:
        """Release connections."""


def _page(rows: list[tuple[int, str, dict[str, Any]]], limit: int) -> EventPage:
    """Return a page from up to ``limit + 1`` rows (the extra one says a next page exists)."""
    events = [row[2] for row in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return EventPage(events, Cursor(last[0], last[1]).encode() if last else None)


def _select_events(query: EventQuery, mark: str, type_prefix: str) -> tuple[str, list[Any]]:
    """Return the SELECT of one page of ``query`` and its parameters, in a SQL dialect.

    ``mark`` is the dialect's placeholder (``?`` or ``%s``) and ``type_prefix``
    the expression for the first N characters of ``type`` (N a parameter).
    Column names come from here; every value is a parameter. The extra row
    fetched past the limit tells :func:`_page` whether there is a next page.
    """
    where, args = [], []
    for column in ("subject", "client"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = {mark}")
            args.append(value)
    if query.type is not None:
        if query.type.endswith(".*"):
            where.append(f"{type_prefix} = {mark}")
            args += [len(query.type) - 1, query.type[:-1]]
        else:
            where.append(f"type = {mark}")
            args.append(query.type)
    if query.since is not None:
        where.append(f"time >= {mark}")
        args.append(query.since)
    if query.until is not None:
        where.append(f"time <= {mark}")
        args.append(query.until)
    if query.cursor is not None:
        where.append(f"(time, id) < ({mark}, {mark})")
        args += [query.cursor.time, query.cursor.key]
    sql = "SELECT time, id, body FROM audit_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY time DESC, id DESC LIMIT {mark}", [*args, query.limit + 1]


def _table_rows(records: Sequence[Record]) -> list[tuple[Any, ...]]:
    """Return the ``audit_events`` rows of a batch: the indexed fields, then the JSON line as the body."""
    return [(e["id"], e["time"], e["type"], e.get("subject"), e.get("client"), e.get("outcome"), line)
            for e, line in records]


class MemoryEventStore:
    """Events in a bounded deque, oldest dropped first."""

    def __init__(self, max_events: int = MEMORY_CAP) -> None:
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=min(max_events, MEMORY_CAP))
        self._lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        """Append the events."""
        with self._lock:
            self._events.extend((event["time"], event["id"], event) for event, _ in records)

    def query(self, query: EventQuery) -> EventPage:
        """Return one page of matching events, newest first."""
        with self._lock:
            rows = list(self._events)
        if query.cursor is not None:
            edge = (query.cursor.time, query.cursor.key)
            rows = [row for row in rows if (row[0], row[1]) < edge]
        rows = sorted((row for row in rows if query.matches(row[2])), key=lambda r: (r[0], r[1]),
                      reverse=True)
        return _page(rows[:query.limit + 1], query.limit)

    def prune(self, before: int) -> int:
        """Drop events older than ``before``."""
        with self._lock:
            kept = [row for row in self._events if row[0] >= before]
            dropped = len(self._events) - len(kept)
            self._events = deque(kept, maxlen=self._events.maxlen)
        return dropped

    def ping(self) -> None:
        """Always answers: it is in this process."""

    def close(self) -> None:
        """Nothing to release."""


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id TEXT PRIMARY KEY, time INTEGER NOT NULL, type TEXT NOT NULL,
    subject TEXT, client TEXT, outcome TEXT, body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time, id);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events(subject, time, id);
CREATE INDEX IF NOT EXISTS audit_events_client ON audit_events(client, time, id);
CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events(type, time, id);
"""


def sqlite_events_path(store_path: str | Path) -> Path:
    """Return the audit database beside a SQLite session store: policy-sso.db has policy-sso-audit.db."""
    path = Path(store_path)
    return path.with_name(f"{path.stem}-audit{path.suffix or '.db'}")


MOVE_MARGIN = 300  # seconds: events of the session file this recent are copied again under its lock


def _has_events_table(db: sqlite3.Connection, schema: str = "main") -> bool:
    """Return whether the connection's database ``schema`` has the table audit_events."""
    query = f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = 'audit_events'"  # noqa: S608
    return db.execute(query).fetchone() is not None


def _file_has_events_table(path: Path) -> bool:
    """Return whether the SQLite file at ``path`` (opened read-only) has the table audit_events."""
    if not path.is_file():
        return False
    with contextlib.closing(_read_only(path)) as db:
        return _has_events_table(db)


def _read_only(path: Path) -> sqlite3.Connection:
    """Return a connection that can only read the file (``mode=ro``: it creates nothing)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                           timeout=30)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, begin: str) -> Iterator[None]:
    db.execute(begin)
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SQLiteEventStore:
    """The table ``audit_events`` in its own file beside the store's (WAL: queries never block the writer).

    Given the session store's path. SQLite has one write lock per file: in the
    session file, each batch of events held it for milliseconds while every
    session write (a rate-limit lease, a code's redemption) waited, and under
    load those waits were the p99 of silent authorize (``bench_http.py``: 6x
    p50 against 2.4x without events). Events an earlier version kept in the
    session file move here when the store first opens.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open the events beside the session store at ``path``.

        ``read_only`` (``policy-sso events``) writes nothing: no file is created
        and nothing is moved, and events an earlier version left in the session
        file are read where they are until the server moves them.
        """
        self.store_path = Path(path)
        self.path = sqlite_events_path(path)
        self.read_only = read_only
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if read_only:
            if not self.path.exists():
                if not self.store_path.is_file():
                    raise StoreError(f"no SQLite store at {self.store_path}: has the server run?")
                if _file_has_events_table(self.store_path):
                    self.path = self.store_path  # not moved yet: the server moves them when it starts
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(SQLITE_SCHEMA)
        self._move_events_from_the_store_file()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self.read_only:
                db = _read_only(self.path)
            else:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                wal_mode(db)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _move_events_from_the_store_file(self) -> None:
        """Move the events an earlier version wrote into the session file here, then drop them there.

        The bulk is copied without the session file's write lock (in WAL a
        reader never blocks its writers), so a server still serving from it
        waits for nothing. Then, under that lock, what was written meanwhile
        is copied and the old table dropped. Several workers may start at once:
        the copy ignores ids already here and the table goes in the same
        transaction as the last copy, so nothing is lost or doubled.
        """
        if not _file_has_events_table(self.store_path):
            return
        columns = "id, time, type, subject, client, outcome, body"
        db = self._db()
        db.execute("ATTACH DATABASE ? AS store", (str(self.store_path),))
        try:
            since = int(_time.time()) - MOVE_MARGIN  # events written from now on: the second pass
            with _transaction(db, "BEGIN"):  # a write lock on this file, a read snapshot of the other
                if _has_events_table(db, "store"):
                    db.execute(f"INSERT OR IGNORE INTO main.audit_events SELECT {columns} "  # noqa: S608
                               "FROM store.audit_events")
            with _transaction(db, "BEGIN IMMEDIATE"):
                if _has_events_table(db, "store"):
                    db.execute(f"INSERT OR IGNORE INTO main.audit_events SELECT {columns} "  # noqa: S608
                               "FROM store.audit_events WHERE time >= ?", (since,))
                    db.execute("DROP TABLE store.audit_events")
        finally:
            db.execute("DETACH DATABASE store")

    def write(self, records: Sequence[Record]) -> None:
        """Insert a batch in one transaction (an id seen before is ignored: writes may be retried)."""
        db = self._db()
        rows = _table_rows(records)
        with _transaction(db, "BEGIN IMMEDIATE"):
            db.executemany("INSERT OR IGNORE INTO audit_events (id, time, type, subject, client, outcome, "
                           "body) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def query(self, query: EventQuery) -> EventPage:
        """Return one page of matching events, newest first (one indexed SELECT)."""
        sql, args = _select_events(query, "?", "substr(type, 1, ?)")
        rows = self._db().execute(sql, args).fetchall()
        return _page([(t, i, json.loads(body)) for t, i, body in rows], query.limit)

    def prune(self, before: int) -> int:
        """Delete events older than ``before``."""
        return self._db().execute("DELETE FROM audit_events WHERE time < ?", (before,)).rowcount

    def ping(self) -> None:
        """Read the table (sqlite3.Error when the file is gone, unreadable or not a database)."""
        self._db().execute("SELECT 1 FROM audit_events LIMIT 1").fetchall()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()


STREAM = "psso:audit"  # beside the session store's own psso: keys
_CHUNK = 500
_MAX_SEQ = 2**64 - 1
_STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


class RedisEventStore:
    """A capped Redis stream; entry ids are ``<event time in ms>-<seq>`` while times only grow."""

    def __init__(self, client: Any, max_events: int = 100000, key: str = STREAM) -> None:
        self.redis = client
        self.max_events = max_events
        self.key = key

    @classmethod
    def from_url(cls, url: str, max_events: int = 100000) -> RedisEventStore:
        """Return the sink on the Redis (or Redis Cluster) a URL names, on its own connections.

        On a cluster the stream is one key, so one slot: every command here names only it.
        """
        import redis

        from policy_sso.sessions.redis import CLUSTER_SCHEMES, connect

        if url.partition("://")[0] in CLUSTER_SCHEMES:
            return cls(connect(url, 5), max_events)  # connect raises StoreError, naming the nodes
        try:
            # a paused or unreachable server answers within seconds, not never
            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            client.ping()
        except redis.RedisError as err:
            raise StoreError(f"cannot reach Redis at {url.rsplit('@', 1)[-1]}: {err}") from None
        return cls(client, max_events)

    def write(self, records: Sequence[Record]) -> None:
        """XADD each event, capped at about ``max_events`` entries."""
        import redis

        pipe = self.redis.pipeline(transaction=False)
        for event, line in records:
            pipe.xadd(self.key, {"e": line}, id=f"{event['time'] * 1000}-*", maxlen=self.max_events,
                      approximate=True)
        results = pipe.execute(raise_on_error=False)
        for (_, line), result in zip(records, results, strict=True):
            if isinstance(result, redis.ResponseError):
                # another instance (or a clock that stepped back) wrote a later time first: the
                # stream's order wins and Redis files the event after its newest entry
                self.redis.xadd(self.key, {"e": line}, maxlen=self.max_events, approximate=True)

    def query(self, query: EventQuery) -> EventPage:
        """Return one page of matching events, newest first, scanning the stream in chunks.

        A cursor whose key is no stream id (``<ms>-<seq>``) is not one this
        store returned: InvalidRequest, never a command Redis refuses.
        """
        if query.cursor is not None and not _STREAM_ID_RE.match(query.cursor.key):
            raise InvalidRequest("cursor is not one this server returned")
        high = f"({query.cursor.key}" if query.cursor is not None else (
            f"{query.until * 1000 + 999}-{_MAX_SEQ}" if query.until is not None else "+")
        low = f"{query.since * 1000}-0" if query.since is not None else "-"
        rows: list[tuple[int, str, dict[str, Any]]] = []
        scanned = 0
        while len(rows) <= query.limit and scanned <= self.max_events * 2:
            chunk = self.redis.xrevrange(self.key, high, low, count=_CHUNK)
            if not chunk:
                break
            scanned += len(chunk)
            for entry_id, fields in chunk:
                event = json.loads(fields[b"e"])
                if query.matches(event):
                    rows.append((event["time"], entry_id.decode(), event))
                    if len(rows) > query.limit:
                        break
            high = f"({chunk[-1][0].decode()}"
        return _page(rows, query.limit)

    def prune(self, before: int) -> int:
        """Trim entries older than ``before`` (``XTRIM MINID``, exact: ``~`` keeps whole old nodes)."""
        return int(self.redis.xtrim(self.key, minid=f"{before * 1000}-0", approximate=False) or 0)

    def ping(self) -> None:
        """PING the server (a RedisError when it does not answer)."""
        self.redis.ping()

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()


POSTGRES_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_events (id TEXT PRIMARY KEY, time BIGINT NOT NULL, type TEXT NOT NULL, "
    "subject TEXT, client TEXT, outcome TEXT, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time, id)",
    "CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time, id)",
    "CREATE INDEX IF NOT EXISTS audit_events_client ON audit_events (client, time, id)",
    "CREATE INDEX IF NOT EXISTS audit_events_type ON audit_events (type, time, id)",
)


class PostgresEventStore:
    """The table ``audit_events`` in the store's PostgreSQL database, on a small pool of its own."""

    def __init__(self, url: str) -> None:
        import psycopg
        import psycopg_pool

        self.pool = psycopg_pool.ConnectionPool(url, kwargs={"autocommit": True, "connect_timeout": 5},
                                                min_size=1, max_size=4, timeout=30, open=False,
                                                name="policy-sso-audit")
        try:
            self.pool.open(wait=True, timeout=10)
            with self.pool.connection() as db, db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (0x70737361,))  # instances starting at once
                for statement in POSTGRES_SCHEMA:
                    db.execute(statement)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as err:
            self.pool.close()
            raise StoreError(f"cannot use PostgreSQL at {url.rsplit('@', 1)[-1]}: {str(err)[:200]}") from None

    def write(self, records: Sequence[Record]) -> None:
        """Insert a batch in one transaction (an id seen before is ignored: writes may be retried)."""
        rows = _table_rows(records)
        with self.pool.connection() as db, db.transaction(), db.cursor() as cursor:
            cursor.executemany("INSERT INTO audit_events (id, time, type, subject, client, outcome, body) "
                               "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING", rows)

    def query(self, query: EventQuery) -> EventPage:
        """Return one page of matching events, newest first (one indexed SELECT)."""
        sql, args = _select_events(query, "%s", "left(type, %s)")
        with self.pool.connection() as db:
            rows = db.execute(sql, args).fetchall()  # type: ignore[call-overload]
        return _page([(t, i, json.loads(body)) for t, i, body in rows], query.limit)

    def prune(self, before: int) -> int:
        """Delete events older than ``before``."""
        with self.pool.connection() as db:
            return db.execute("DELETE FROM audit_events WHERE time < %s", (before,)).rowcount

    def ping(self) -> None:
        """Read the table on a pooled connection (a psycopg error when the server does not answer)."""
        with self.pool.connection(timeout=5) as db:  # readiness answers within seconds, not the pool's 30
            db.execute("SELECT 1 FROM audit_events LIMIT 1").fetchall()

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()


def open_event_store(url: str, max_events: int = 100000, *, read_only: bool = False) -> EventStore:
    """Return the store sink for a store URL (``memory://``, ``sqlite:///PATH``, ``redis://…``,
    ``postgresql://…``); ``read_only``: a SQLite file is only read (``policy-sso events``)."""
    if url.startswith("memory:"):
        return MemoryEventStore(max_events)
    if url.startswith(("postgresql:", "postgres:")):
        return PostgresEventStore(url)
    if url.startswith("sqlite:"):
        return SQLiteEventStore(url.removeprefix("sqlite:///"), read_only=read_only)
    if url.startswith(("redis:", "rediss:", "unix:", "redis+cluster:", "rediss+cluster:")):
        return RedisEventStore.from_url(url, max_events)
    raise StoreError(f"unsupported store URL {url!r}: use memory://, sqlite:///PATH, redis://HOST:PORT/DB, "
                     "redis+cluster://HOST:PORT[,HOST:PORT...] or postgresql://USER@HOST:PORT/DB")


def event_store_for(store: Any, max_events: int = 100000) -> EventStore:
    """Return the store sink beside a session store object: same file or server, its own connection."""
    from policy_sso.sessions.redis import RedisStore
    from policy_sso.sessions.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteEventStore(store.path)
    if type(store).__name__ == "PostgresStore":  # not imported: psycopg is an optional dependency
        return PostgresEventStore(store.pool.conninfo)
    if isinstance(store, RedisStore) and not hasattr(store.redis, "connection_pool"):  # a cluster
        return RedisEventStore.from_url(store.url, max_events)
    if isinstance(store, RedisStore):
        import redis

        pool = store.redis.connection_pool
        own = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class,
                                                               **pool.connection_kwargs))
        return RedisEventStore(own, max_events)
    return MemoryEventStore(max_events)
