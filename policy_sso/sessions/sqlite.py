"""The SQLite store: the embedded default, one file under the state directory.

WAL mode: readers never block the writer, and a committed transaction
survives the process being killed (``synchronous=NORMAL`` only risks the
last commits on power loss, not on a crash). Each thread has its own
connection; writers that read-modify-write take the write lock first
(``BEGIN IMMEDIATE``), so concurrent updates across threads and processes
lose nothing.

A session row is keyed by the id's digest (:func:`~policy_sso.sessions.store.session_key`),
never the id, and keeps ``last_seen`` and its hard expiry (sliding and absolute
lifetime) as columns: a read is one primary-key SELECT with the expiry in
its WHERE clause, and a touch rewrites one integer, only when last-seen has
moved by ``touch_interval``.

Faults: a call waits for a lock at most the store timeout (SQLite's busy
timeout); "database is locked", I/O and other operational errors become
:class:`~policy_sso.errors.StoreUnavailable`, and a transaction that failed is
rolled back, so the thread's connection serves the next call as if nothing
had happened.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from policy_sso.sessions import codec
from policy_sso.sessions.model import (
    LOGGED_OUT,
    AuthEvent,
    ClientJoin,
    Device,
    Session,
    SessionEnd,
    SessionLifetime,
)
from policy_sso.sessions.store import (
    REVOKED_ACCESS_TOKENS,
    AccessToken,
    RefreshRotation,
    SessionKey,
    StoreOptions,
    session_key,
    stored_session_key,
    translate_faults,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, subject TEXT NOT NULL, data TEXT NOT NULL,
    last_seen INTEGER NOT NULL, hard_expiry INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_subject ON sessions(subject);
DROP TABLE IF EXISTS codes;
CREATE TABLE IF NOT EXISTS refresh (
    key TEXT PRIMARY KEY, family TEXT NOT NULL, data TEXT NOT NULL,
    expires_at INTEGER NOT NULL, spent INTEGER NOT NULL DEFAULT 0,
    access TEXT, access_expires INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_family ON refresh(family);
CREATE TABLE IF NOT EXISTS jtis (
    ns TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (ns, jti)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_ends (
    key TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS not_before (
    subject TEXT PRIMARY KEY, at INTEGER NOT NULL, expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS credentials (
    subject TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (subject, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL, start INTEGER NOT NULL, count INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    PRIMARY KEY (key, start)
) WITHOUT ROWID;
"""

# The rows keyed by a digest. A file written before sessions were keyed so holds rows keyed by
# the id in the clear (43 characters): no id or key finds one, none is handed out, sweep ends them.
_KEYED = "length(id) = 64"


def _record_text(record: dict[str, Any]) -> str:
    # one spelling per record, so replace_credential can compare stored text
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


# sqlite3's operational failures (locked, busy, disk I/O, a file that is not a database);
# IntegrityError and ProgrammingError are bugs, not faults, and stay what they are
_FAULTS = (sqlite3.OperationalError, sqlite3.InternalError)
_STARTUP_BUSY_MS = 30_000  # creating the schema may wait for other processes starting at once


def wal_mode(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Put the connection's file in WAL mode, waiting for others who open a new file at the same moment.

    Every worker of ``serve --workers`` creates the audit file as it starts,
    and two servers may start on one fresh state directory. Turning a new file
    to WAL needs a lock that SQLite does not wait for (its busy timeout does
    not apply): "database is locked" at once, for about a quarter of the
    processes that start together. So it is tried again. The connection then
    syncs only at checkpoints (``synchronous=NORMAL``: a power cut may lose the
    last commits, never the file).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
    db.execute("PRAGMA synchronous=NORMAL")


def _spend(db: sqlite3.Connection, namespace: str, jti: str, expires_at: int, now: int | None) -> bool:
    """Record a jti unless a live record holds it; a record expired by ``now`` is taken over."""
    return db.execute("INSERT INTO jtis (ns, jti, expires_at) VALUES (?, ?, ?) ON CONFLICT (ns, jti) "
                      "DO UPDATE SET expires_at = excluded.expires_at WHERE jtis.expires_at <= ?",
                      (namespace, jti, expires_at, -1 if now is None else now)).rowcount == 1


@translate_faults(*_FAULTS)
class SQLiteStore:
    """Implements :class:`~policy_sso.sessions.store.Store` on one SQLite file."""

    loses_records = False  # a commit is on disk

    def __init__(self, path: str | Path, lifetime: SessionLifetime,
                 options: StoreOptions | None = None) -> None:
        options = options or StoreOptions()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lifetime = lifetime
        self.timeout = options.timeout
        self.max_sessions_per_user = options.max_sessions_per_user
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._connections_lock = threading.Lock()
        self._decoded = codec.DecodedSessions()
        db = self._db(startup=True)
        db.execute(f"PRAGMA busy_timeout={_STARTUP_BUSY_MS}")
        db.executescript(SCHEMA)
        _add_access_columns(db)
        db.execute(f"PRAGMA busy_timeout={self._busy_ms()}")

    def _busy_ms(self) -> int:
        return max(1, int(self.timeout * 1000))

    # connections ---------------------------------------------------------------------
    def _db(self, startup: bool = False) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=self.timeout)
            db.execute(f"PRAGMA busy_timeout={self._busy_ms()}")  # a lock waited for at most the timeout
            # servers starting at once on a new file wait for each other; later, a lock is a fault
            wal_mode(db, _STARTUP_BUSY_MS / 1000 if startup else self.timeout)
            self._local.db = db
            with self._connections_lock:
                # a thread that has ended left its connection here: close it, or each
                # short-lived thread would hold three file descriptors until close()
                for thread in [t for t in self._connections if not t.is_alive()]:
                    self._connections.pop(thread).close()
                self._connections[threading.current_thread()] = db
        return db

    def _write(self) -> _Transaction:
        return _Transaction(self._db())

    # sessions ------------------------------------------------------------------------
    def _hard_expiry(self, session: Session) -> int:
        return min(session.auth_time + self.lifetime.sliding, session.created_at + self.lifetime.absolute)

    def _read(self, db: sqlite3.Connection, session_id: str, now: int) -> Session | None:
        # one column (last-seen, a space, the JSON): Python's sqlite3 lets go of the GIL for every
        # column it reads, and under load each of those is a handover between the server's threads
        row = db.execute(
            "SELECT last_seen || ' ' || data FROM sessions WHERE id = ? AND ? < hard_expiry "
            "AND ? - last_seen <= ?",
            (session_key(session_id), now, now, self.lifetime.inactivity)).fetchone()
        if row is None:
            return None
        last_seen, _, text = row[0].partition(" ")
        return self._decoded.decode(session_id, text, int(last_seen))

    def _save(self, db: sqlite3.Connection, session: Session) -> Session:
        db.execute("INSERT OR REPLACE INTO sessions (id, subject, data, last_seen, hard_expiry) "
                   "VALUES (?, ?, ?, ?, ?)",
                   (session_key(session.id), session.subject, codec.encode(session), session.last_seen,
                    self._hard_expiry(session) + 1))
        return session

    def create_session(self, session: Session) -> list[Session]:
        now = session.last_seen
        live = f"subject = ? AND ? < hard_expiry AND ? - last_seen <= ? AND {_KEYED}"
        args = (session.subject, now, now, self.lifetime.inactivity)
        with self._write() as db:
            self._save(db, session)
            # first a count on the subject index alone, stopped past the bound (at most bound + 1
            # index entries, however many sessions the subject made); rows are read only when over
            (rows_of_subject,) = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM sessions WHERE subject = ? LIMIT ?)",
                (session.subject, self.max_sessions_per_user + 1)).fetchone()
            if rows_of_subject <= self.max_sessions_per_user:
                return []
            (count,) = db.execute(f"SELECT count(*) FROM sessions WHERE {live}", args).fetchone()  # noqa: S608
            if count <= self.max_sessions_per_user:
                return []
            # the oldest by creation end first; the new one never
            rows = db.execute(
                f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE {live} AND id != ? "  # noqa: S608
                "ORDER BY json_extract(data, '$.c'), id LIMIT ?) RETURNING id, data, last_seen",
                (*args, session_key(session.id), count - self.max_sessions_per_user)).fetchall()
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen in rows]

    def get_session(self, session_id: str, now: int) -> Session | None:
        return self._read(self._db(), session_id, now)

    def touch_session(self, session_id: str, now: int) -> None:
        # the liveness test belongs in the UPDATE: a touch must never revive an idle, unswept row
        self._db().execute(
            "UPDATE sessions SET last_seen = ? WHERE id = ? AND ? - last_seen >= ? "
            "AND ? < hard_expiry AND ? - last_seen <= ?",
            (now, session_key(session_id), now, self.lifetime.touch_interval, now, now,
             self.lifetime.inactivity))

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        session = self._read(self._db(), session_id, now)
        if session is not None and now - session.last_seen >= self.lifetime.touch_interval:
            self.touch_session(session_id, now)
        return session

    def _update(self, session_id: str, now: int, change: Any) -> Session | None:
        with self._write() as db:
            session = self._read(db, session_id, now)
            if session is None:
                return None
            updated = change(session)
            if updated is session:
                return session
            if updated.id != session_id:
                db.execute("DELETE FROM sessions WHERE id = ?", (session_key(session_id),))
            return self._save(db, updated)

    def reauthenticate(self, session_id: str, event: AuthEvent, new_id: str, now: int,
                       device: Device | None = None) -> Session | None:
        return self._update(session_id, now, lambda s: s.with_event(event, new_id, device))

    def join_client(self, session_id: str, join: ClientJoin, now: int) -> Session | None:
        return self._update(session_id, now, lambda s: s.with_client(join))

    def grant_consent(self, session_id: str, client_id: str, scopes: frozenset[str],
                      now: int) -> Session | None:
        return self._update(session_id, now, lambda s: s.with_consent(client_id, scopes, now))

    def withdraw_consent(self, session_id: str, client_id: str, now: int) -> Session | None:
        return self._update(session_id, now, lambda s: s.without_consent(client_id))

    def end_session(self, session_id: str, reason: str = LOGGED_OUT,
                    now: int | None = None) -> Session | None:
        key = session_key(session_id)
        with self._write() as db:
            # fetchall steps a RETURNING statement to its end, so it is complete before COMMIT
            rows = db.execute("DELETE FROM sessions WHERE id = ? RETURNING data, last_seen",
                              (key,)).fetchall()
            if rows:
                self._put_end(db, key, SessionEnd(reason, _now(now)))
        return codec.decode(session_id, rows[0][0], rows[0][1]) if rows else None

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        with self._write() as db:
            rows = db.execute(f"DELETE FROM sessions WHERE subject = ? AND {_KEYED} "  # noqa: S608
                              "RETURNING id, data, last_seen", (subject,)).fetchall()
            for key, _, _ in rows:
                self._put_end(db, SessionKey(key), SessionEnd(reason, _now(now)))
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen in rows]

    # why sessions ended ------------------------------------------------------------------
    @staticmethod
    def _put_end(db: sqlite3.Connection, session_id: str, end: SessionEnd) -> None:
        db.execute("INSERT OR REPLACE INTO session_ends (key, data, expires_at) VALUES (?, ?, ?)",
                   (session_key(session_id), codec.encode_end(end), end.kept_until()))

    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        with self._write() as db:
            self._put_end(db, session_id, end)

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        db, key = self._db(), session_key(session_id)
        row = db.execute("SELECT data, last_seen FROM sessions WHERE id = ?", (key,)).fetchone()
        end: SessionEnd | None
        if row is not None:
            session = codec.decode(session_id, row[0], row[1])
            if self.lifetime.is_live(session, now):
                return None
            # an expired row not yet swept: keep only why it ended, from here on (the write
            # lock only here: the usual miss, an id with a record or none, is one read)
            end = self.lifetime.end_of(session)
            with self._write() as locked:
                locked.execute("DELETE FROM sessions WHERE id = ?", (key,))
                self._put_end(locked, key, end)
        else:
            found = db.execute("SELECT data FROM session_ends WHERE key = ?", (key,)).fetchone()
            end = codec.decode_end(found[0]) if found else None
        return end if end is not None and now < end.kept_until() else None

    def sessions_of(self, subject: str, now: int) -> list[Session]:
        rows = self._db().execute(
            "SELECT id, data, last_seen FROM sessions WHERE subject = ? AND ? < hard_expiry "  # noqa: S608
            f"AND ? - last_seen <= ? AND {_KEYED}", (subject, now, now, self.lifetime.inactivity)).fetchall()
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen in rows]

    # refresh tokens ----------------------------------------------------------------------
    # A token's row also holds the access token issued with it (``access``, ``access_expires``): the
    # family's rows, spent ones included, name every access token a revocation must take along. A
    # row stays until both it and its access token have expired (sweep).
    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any], expires_at: int,
                    now: int | None = None, *, access: AccessToken | None = None) -> None:
        self._db().execute(_INSERT_REFRESH, (token_key, family_id, json.dumps(data), expires_at,
                                             *(access or (None, None))))

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int, *,
                       access: AccessToken | None = None) -> RefreshRotation:
        with self._write() as db:
            row = db.execute("SELECT family, data, spent FROM refresh WHERE key = ? AND ? < expires_at",
                             (old_key, now)).fetchone()
            if row is None:
                return RefreshRotation("unknown")
            family, data, spent = row
            if spent:
                self._revoke(db, family, now)
                return RefreshRotation("reused", family, json.loads(data))
            db.execute("UPDATE refresh SET spent = 1 WHERE key = ?", (old_key,))
            db.execute(_INSERT_REFRESH, (new_key, family, data, expires_at, *(access or (None, None))))
            return RefreshRotation("ok", family, json.loads(data))

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        row = self._db().execute("SELECT family, data FROM refresh WHERE key = ? AND ? < expires_at "
                                 "AND spent = 0", (token_key, now)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def _revoke(self, db: sqlite3.Connection, family_id: str, now: int | None) -> None:
        """Delete the family's tokens; its live access tokens become revoked jtis (one transaction)."""
        db.execute("INSERT INTO jtis (ns, jti, expires_at) SELECT ?, access, max(access_expires) "
                   "FROM refresh WHERE family = ? AND access IS NOT NULL AND ? < access_expires "
                   "GROUP BY access ON CONFLICT (ns, jti) "
                   "DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                   (REVOKED_ACCESS_TOKENS, family_id, _now(now)))
        db.execute("DELETE FROM refresh WHERE family = ?", (family_id,))

    def revoke_family(self, family_id: str, now: int | None = None) -> None:
        with self._write() as db:
            self._revoke(db, family_id, now)

    # identifiers and counters -----------------------------------------------------------
    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        return _spend(self._db(), namespace, jti, expires_at, now)

    def use_jtis(self, entries: Sequence[tuple[str, str, int]], now: int | None = None) -> tuple[bool, ...]:
        # one transaction (one lock, one commit) of plain upserts: cheaper than one with RETURNING
        with self._write() as db:
            return tuple(_spend(db, *entry, now) for entry in entries)

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        row = self._db().execute("SELECT 1 FROM jtis WHERE ns = ? AND jti = ? AND ? < expires_at",
                                 (namespace, jti, now)).fetchone()
        return row is not None

    def intact_since(self) -> int:
        return 0  # nothing acknowledged is lost

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        start = now - now % window
        (count,) = self._db().execute(
            "INSERT INTO counters (key, start, count, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key, start) DO UPDATE SET count = count + excluded.count RETURNING count",
            (key, start, amount, start + window)).fetchall()[0]  # fetchall completes (commits) the statement
        return count, start + window

    # per-subject token cut-off ------------------------------------------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        self._db().execute(
            "INSERT INTO not_before (subject, at, expires_at) VALUES (?, ?, ?) ON CONFLICT (subject) "
            "DO UPDATE SET at = excluded.at, expires_at = excluded.expires_at WHERE excluded.at > at",
            (subject, at, expires_at))

    def not_before(self, subject: str, now: int) -> int:
        row = self._db().execute("SELECT at FROM not_before WHERE subject = ?", (subject,)).fetchone()
        return row[0] if row else 0

    # credentials set at run time ------------------------------------------------------------
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        self._db().execute("INSERT INTO credentials (subject, id, data) VALUES (?, ?, ?) "
                           "ON CONFLICT (subject, id) DO UPDATE SET data = excluded.data",
                           (subject, credential_id, _record_text(record)))

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        rows = self._db().execute("SELECT id, data FROM credentials WHERE subject = ?", (subject,)).fetchall()
        return {cid: json.loads(data) for cid, data in rows}

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        cursor = self._db().execute(
            "UPDATE credentials SET data = ? WHERE subject = ? AND id = ? AND data = ?",
            (_record_text(new), subject, credential_id, _record_text(old)))
        return cursor.rowcount == 1

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        cursor = self._db().execute("DELETE FROM credentials WHERE subject = ? AND id = ?",
                                    (subject, credential_id))
        return cursor.rowcount == 1

    # housekeeping ---------------------------------------------------------------------------
    def ping(self) -> None:
        """Return once the write lock can be taken within the timeout (what sign-ins need)."""
        with self._write():
            pass

    def sweep(self, now: int) -> int:
        with self._write() as db:
            rows = db.execute("DELETE FROM sessions WHERE ? >= hard_expiry OR ? - last_seen > ? "
                              "RETURNING id, data, last_seen",
                              (now, now, self.lifetime.inactivity)).fetchall()
            for stored, data, last_seen in rows:
                key = stored_session_key(stored)  # None: a row keyed by its id in the clear (an old file)
                end = self.lifetime.end_of(codec.decode(stored, data, last_seen))
                if key is not None and now < end.kept_until():
                    self._put_end(db, key, end)
            removed = len(rows)
            # a refresh token's row stays while the access token issued with it lives (_revoke)
            removed += db.execute("DELETE FROM refresh WHERE ? >= max(expires_at, "
                                  "coalesce(access_expires, 0))", (now,)).rowcount
            for table in ("jtis", "counters", "session_ends", "not_before"):
                # table names come from this tuple, never from input
                removed += db.execute(f"DELETE FROM {table} WHERE ? >= expires_at", (now,)).rowcount  # noqa: S608
        return removed

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections.values():
                db.close()
            self._connections.clear()
        self._local = threading.local()


def _now(now: int | None) -> int:
    """Return ``now``, or the wall clock's second when a caller has none (the edge)."""
    return int(time.time()) if now is None else now


_INSERT_REFRESH = ("INSERT OR REPLACE INTO refresh (key, family, data, expires_at, spent, access, "
                   "access_expires) VALUES (?, ?, ?, ?, 0, ?, ?)")


def _add_access_columns(db: sqlite3.Connection) -> None:
    """Give a file made before refresh rows named their access token the two columns that do."""
    have = {row[1] for row in db.execute("PRAGMA table_info(refresh)")}
    for column, kind in (("access", "TEXT"), ("access_expires", "INTEGER")):
        if column not in have:
            try:
                db.execute(f"ALTER TABLE refresh ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as err:  # another process starting at once added it first
                if "duplicate column" not in str(err):
                    raise


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error): a write lock for read-modify-write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()  # a COMMIT that failed (e.g. locked) leaves the transaction open
                raise
        self._rollback()

    def _rollback(self) -> None:
        """Roll back if a transaction is open, so the connection is clean for the next call."""
        if self.db.in_transaction:
            # the caller's error is what matters; a rollback that fails too ends with the connection
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
