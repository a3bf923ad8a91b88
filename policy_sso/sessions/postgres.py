"""The PostgreSQL store: many instances on many machines share one durable database.

Semantics are SQLite's (:mod:`policy_sso.sessions.sqlite`), with the same
tables: a session row, keyed by the id's digest (never the id), keeps
``last_seen`` and its hard expiry as columns, so a read is one primary-key
SELECT with the expiry in its WHERE clause, and
get-and-touch adds an UPDATE only once last-seen is ``touch_interval`` old.
Read-modify-write takes the row lock (``SELECT ... FOR UPDATE``) in a
transaction; single use (codes, jtis) is one ``INSERT ... ON CONFLICT`` whose
row count says who won; creating a session upserts the subject's row in
``subject_sessions`` first, whose row lock keeps the per-user bound under
concurrent sign-ins; a refresh rotation and a family's revocation take the
family's advisory lock.

Connections come from a pool (psycopg_pool), opened by the process that uses
it: a worker forked from a supervisor opens its own store. Each thread keeps
the connection it took until it ends or the connection fails. The store timeout
bounds the wait for a pooled connection, the connect (libpq rounds it up to
2 s) and every statement and lock wait (``statement_timeout``,
``lock_timeout``). A server that stops answering altogether (hung, paused, cut
off without a reset) enforces neither, so every store call also has a deadline
on this side (:class:`_Deadlines`): past it the call's connection is shut down
under it. A timeout, a refused or dropped connection, a deadlock or a
serialization failure becomes :class:`~policy_sso.errors.StoreUnavailable`,
and the pool replaces a broken connection.

The schema is created and migrated on start, under an advisory lock so
instances starting at once do not race; ``policy_sso_schema`` records the
version reached, and each migration runs once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool

from policy_sso.errors import StoreError
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

# Each entry migrates from the previous version; statements are idempotent (IF NOT EXISTS) so a
# database created by hand, or a migration interrupted before its version was recorded, is fine.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, subject TEXT NOT NULL, "
        "created_at BIGINT NOT NULL, data TEXT NOT NULL, last_seen BIGINT NOT NULL, "
        "hard_expiry BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS sessions_subject ON sessions (subject, created_at, id)",
        "CREATE TABLE IF NOT EXISTS refresh (key TEXT PRIMARY KEY, family TEXT NOT NULL, "
        "data TEXT NOT NULL, expires_at BIGINT NOT NULL, spent BOOLEAN NOT NULL DEFAULT FALSE)",
        "CREATE INDEX IF NOT EXISTS refresh_family ON refresh (family)",
        "CREATE TABLE IF NOT EXISTS jtis (ns TEXT NOT NULL, jti TEXT NOT NULL, "
        "expires_at BIGINT NOT NULL, PRIMARY KEY (ns, jti))",
        "CREATE TABLE IF NOT EXISTS session_ends (key TEXT PRIMARY KEY, data TEXT NOT NULL, "
        "expires_at BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS not_before (subject TEXT PRIMARY KEY, at BIGINT NOT NULL, "
        "expires_at BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS counters (key TEXT NOT NULL, start BIGINT NOT NULL, "
        "count BIGINT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (key, start))",
    ),
    (
        # per subject: an upper bound on its session rows created at or after ``floor`` (see
        # create_session): creating a session is O(1) until n passes max_sessions_per_user
        "CREATE TABLE IF NOT EXISTS subject_sessions (subject TEXT PRIMARY KEY, n BIGINT NOT NULL, "
        "floor BIGINT NOT NULL)",
    ),
    (
        # credentials set at run time (issue 18): a JSON text per (subject, id), one spelling per
        # record so replace_credential compares stored text
        "CREATE TABLE IF NOT EXISTS credentials (subject TEXT NOT NULL, id TEXT NOT NULL, "
        "data TEXT NOT NULL, PRIMARY KEY (subject, id))",
    ),
    (
        # a refresh token's row names the access token issued with it: revoking the family revokes it
        "ALTER TABLE refresh ADD COLUMN IF NOT EXISTS access TEXT, "
        "ADD COLUMN IF NOT EXISTS access_expires BIGINT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# The rows keyed by a digest. A database written before sessions were keyed so holds rows keyed by
# the id in the clear (43 characters): no id or key finds one, none is handed out, sweep ends them.
_KEYED = "length(id) = 64"
_SCHEMA_LOCK = 0x70737330  # advisory lock key taken while migrating ("pss0")
log = logging.getLogger("policy_sso.store")  # the store's faults, under the name Redis's use
_STARTUP_TIMEOUT_MS = 30_000  # migrating may wait for another instance migrating at once
_POOL_MAX = 32  # one per thread that uses the store (waitress, hashing slots, sweeper, audit), with room

# operational failures (connection refused or lost, statement or lock timeout, deadlock,
# serialization failure, a pool that cannot hand out a connection in time); an IntegrityError
# or a ProgrammingError is a bug and stays what it is
_FAULTS = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)


def _use_jtis_sql(count: int) -> str:
    """Return the statement of ``use_jtis``: ``count`` rows in one upsert (one round trip, one transaction).

    It inserts each new identifier, takes over a record that has expired by
    its last parameter (``now``), and returns the rows it wrote: the
    identifiers that were free.
    """
    rows = ", ".join(["(%s, %s, %s)"] * count)
    return (f"INSERT INTO jtis (ns, jti, expires_at) VALUES {rows} "  # noqa: S608 (placeholders only)
            "ON CONFLICT (ns, jti) DO UPDATE SET expires_at = excluded.expires_at "
            "WHERE jtis.expires_at <= %s RETURNING ns, jti")


class _Deadlines:
    """Ends a store call that a server gone silent leaves waiting (SPEC §7: bounded time).

    ``statement_timeout`` and ``lock_timeout`` are enforced by the server, so
    a server that is hung, paused (SIGSTOP) or cut off without a reset never
    sends them, and libpq waits for its answer for ever: on a thread of
    waitress's I/O loop, every request would wait with it. Each call
    registers its connection and a deadline; one daemon thread looks every
    ``interval`` and shuts down the socket of a call past its deadline, so
    the waiting libpq call fails at once (OperationalError, which becomes
    StoreUnavailable) and the pool discards the connection. Registering is a
    dict write under a lock, so a call that ends just as its deadline passes
    is never mistaken for the next call on the same connection.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._calls: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @contextlib.contextmanager
    def watch(self, db: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
        """Shut ``db`` down if the block has not ended within ``seconds``."""
        me = threading.get_ident()
        with self._lock:
            self._calls[me] = (time.monotonic() + seconds, db)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="policy-sso-pg-deadlines",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(me, None)

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            now = time.monotonic()
            with self._lock:  # held while shutting down: the call cannot end and start another meanwhile
                for me, (deadline, db) in list(self._calls.items()):
                    if now >= deadline:
                        del self._calls[me]
                        _shut_down(db)

    def close(self) -> None:
        self._closed.set()


def _shut_down(db: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under the libpq call waiting on it (which then fails)."""
    try:
        fd = db.pgconn.socket
    except psycopg.Error:  # already closed: nothing waits on it
        return
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as shared:
        shared.shutdown(socket.SHUT_RDWR)  # the same socket as libpq's descriptor, not only this copy
    log.warning("PostgreSQL did not answer within the store's deadline: connection shut down")


@translate_faults(*_FAULTS)
class PostgresStore:
    """Implements :class:`~policy_sso.sessions.store.Store` on a PostgreSQL database."""

    loses_records = False  # a commit is on disk

    def __init__(self, url: str, lifetime: SessionLifetime, options: StoreOptions | None = None) -> None:
        options = options or StoreOptions()
        self.lifetime = lifetime
        self.timeout = options.timeout
        self.max_sessions_per_user = options.max_sessions_per_user
        self._decoded = codec.DecodedSessions()
        self._local = threading.local()
        self._held: dict[threading.Thread, psycopg.Connection[Any]] = {}
        self._held_lock = threading.Lock()
        # a call's deadline here: its statements' timeout on the server, twice over (a call may run a
        # few statements), and a little more, so the server's own timeout is what normally fires
        self.deadline = 2 * options.timeout + 0.5
        self._deadlines = _Deadlines(interval=min(0.25, options.timeout / 4))
        ms = max(1, int(options.timeout * 1000))
        kwargs = {"autocommit": True, "connect_timeout": max(2, math.ceil(options.timeout)),
                  "options": f"-c statement_timeout={ms} -c lock_timeout={ms} "
                             f"-c idle_in_transaction_session_timeout={max(ms * 10, 10_000)}"}
        self.pool = psycopg_pool.ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=_POOL_MAX,
                                                timeout=options.timeout, open=False, name="policy-sso")
        where = url.rsplit("@", 1)[-1]
        try:
            self.pool.open(wait=True, timeout=max(2.0, options.timeout * 2))
            self._migrate()
        except BaseException as err:
            self.pool.close()
            if isinstance(err, (*_FAULTS, psycopg.Error)):
                raise StoreError(f"cannot use PostgreSQL at {where}: {str(err)[:200]}") from None
            raise

    # connections and schema ------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self, seconds: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """The calling thread's connection, taken from the pool once and kept (a pool checkout per
        call cost about a third of a session read); one that failed goes back to the pool, which
        replaces it if it is broken, and the thread takes another on its next call. The block must
        end within ``seconds`` (the store's deadline when None), or the connection is shut down."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self.pool.getconn()
            self._local.db = db
            with self._held_lock:
                # a thread that has ended left its connection here: give it back to the pool
                for thread in [t for t in self._held if not t.is_alive()]:
                    self.pool.putconn(self._held.pop(thread))
                self._held[threading.current_thread()] = db
        try:
            with self._deadlines.watch(db, self.deadline if seconds is None else seconds):
                yield db
        except _FAULTS:
            self._local.db = None
            with self._held_lock:
                self._held.pop(threading.current_thread(), None)
            with contextlib.suppress(Exception):
                self.pool.putconn(db)
            raise

    @contextlib.contextmanager
    def _write(self, seconds: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on the thread's connection: committed on success, rolled back on error."""
        with self._db(seconds) as db, db.transaction():
            yield db

    def _migrate(self) -> None:
        with self._write(2 * _STARTUP_TIMEOUT_MS / 1000) as db:
            db.execute(f"SET LOCAL statement_timeout = {_STARTUP_TIMEOUT_MS}")
            db.execute(f"SET LOCAL lock_timeout = {_STARTUP_TIMEOUT_MS}")
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS policy_sso_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM policy_sso_schema").fetchone()
            version = row[0] if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"the PostgreSQL schema is version {version}, newer than this "
                                 f"policy-sso knows ({SCHEMA_VERSION}): upgrade policy-sso")
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute("INSERT INTO policy_sso_schema (version) VALUES (%s)", (number,))

    # sessions ------------------------------------------------------------------------
    def _hard_expiry(self, session: Session) -> int:
        return min(session.auth_time + self.lifetime.sliding, session.created_at + self.lifetime.absolute)

    def _read(self, db: psycopg.Connection[Any], session_id: str, now: int,
              lock: bool = False) -> Session | None:
        sql = ("SELECT data, last_seen FROM sessions WHERE id = %s AND %s < hard_expiry "
               "AND %s - last_seen <= %s")
        row = db.execute(sql + " FOR UPDATE" if lock else sql,
                         (session_key(session_id), now, now, self.lifetime.inactivity)).fetchone()
        return self._decoded.decode(session_id, row[0], row[1]) if row else None

    def _save(self, db: psycopg.Connection[Any], session: Session) -> Session:
        db.execute("INSERT INTO sessions (id, subject, created_at, data, last_seen, hard_expiry) "
                   "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                   "subject = excluded.subject, created_at = excluded.created_at, data = excluded.data, "
                   "last_seen = excluded.last_seen, hard_expiry = excluded.hard_expiry",
                   (session_key(session.id), session.subject, session.created_at, codec.encode(session),
                    session.last_seen, self._hard_expiry(session) + 1))
        return session

    def create_session(self, session: Session) -> list[Session]:
        now = session.last_seen
        live = f"%s < hard_expiry AND %s - last_seen <= %s AND {_KEYED}"
        bound = self.max_sessions_per_user
        with self._write() as db:
            # The subject's row in subject_sessions: its upsert's row lock queues one subject's
            # sign-ins (two at once cannot both stay under the bound). Every live session of the
            # subject was created at or after ``floor`` (the last evicted one's creation), and at
            # most ``n`` rows were: creating is O(1) until n passes the bound, and the count then
            # starts at the floor, past the index entries of evicted sessions (dead until VACUUM).
            n, floor = db.execute(
                "INSERT INTO subject_sessions (subject, n, floor) VALUES (%s, 1, 0) ON CONFLICT (subject) "
                "DO UPDATE SET n = subject_sessions.n + 1, floor = LEAST(subject_sessions.floor, %s) "
                "RETURNING n, floor", (session.subject, session.created_at)).fetchone()
            self._save(db, session)
            if n <= bound:
                return []
            total, count = db.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {live}) FROM sessions "  # noqa: S608
                "WHERE subject = %s AND created_at >= %s",
                (now, now, self.lifetime.inactivity, session.subject, floor)).fetchone()
            rows = []
            if count > bound:
                # the oldest by creation end first; the new one never
                rows = db.execute(
                    f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE subject = %s "  # noqa: S608
                    f"AND created_at >= %s AND {live} AND id != %s ORDER BY created_at, id LIMIT %s) "
                    "RETURNING id, data, last_seen, created_at",
                    (session.subject, floor, now, now, self.lifetime.inactivity, session_key(session.id),
                     count - bound)).fetchall()
                floor = max([floor, *(row[3] for row in rows)])
            db.execute("UPDATE subject_sessions SET n = %s, floor = %s WHERE subject = %s",
                       (total - len(rows), floor, session.subject))
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen, _ in rows]

    def get_session(self, session_id: str, now: int) -> Session | None:
        with self._db() as db:
            return self._read(db, session_id, now)

    def touch_session(self, session_id: str, now: int) -> None:
        # the liveness test belongs in the UPDATE: a touch must never revive an idle, unswept row
        with self._db() as db:
            db.execute("UPDATE sessions SET last_seen = %s WHERE id = %s AND %s - last_seen >= %s "
                       "AND %s < hard_expiry AND %s - last_seen <= %s",
                       (now, session_key(session_id), now, self.lifetime.touch_interval, now, now,
                        self.lifetime.inactivity))

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        # one primary-key SELECT; the UPDATE only when last-seen is touch_interval old (once a
        # minute per session at most): a statement doing both cost twice the SELECT every time
        with self._db() as db:
            session = self._read(db, session_id, now)
        if session is not None and now - session.last_seen >= self.lifetime.touch_interval:
            self.touch_session(session_id, now)
        return session

    def _update(self, session_id: str, now: int, change: Any) -> Session | None:
        with self._write() as db:
            session = self._read(db, session_id, now, lock=True)
            if session is None:
                return None
            updated = change(session)
            if updated is session:
                return session
            if updated.id != session_id:
                db.execute("DELETE FROM sessions WHERE id = %s", (session_key(session_id),))
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
            row = db.execute("DELETE FROM sessions WHERE id = %s RETURNING data, last_seen",
                             (key,)).fetchone()
            if row is not None:
                self._put_end(db, key, SessionEnd(reason, _now(now)))
        return codec.decode(session_id, row[0], row[1]) if row else None

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        with self._write() as db:
            rows = db.execute(f"DELETE FROM sessions WHERE subject = %s AND {_KEYED} "  # noqa: S608
                              "RETURNING id, data, last_seen", (subject,)).fetchall()
            for key, _, _ in rows:
                self._put_end(db, SessionKey(key), SessionEnd(reason, _now(now)))
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen in rows]

    # why sessions ended ------------------------------------------------------------------
    @staticmethod
    def _put_end(db: psycopg.Connection[Any], session_id: str, end: SessionEnd) -> None:
        db.execute("INSERT INTO session_ends (key, data, expires_at) VALUES (%s, %s, %s) "
                   "ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                   (session_key(session_id), codec.encode_end(end), end.kept_until()))

    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        with self._db() as db:
            self._put_end(db, session_id, end)

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        end: SessionEnd | None
        key = session_key(session_id)
        with self._db() as db:
            row = db.execute("SELECT data, last_seen FROM sessions WHERE id = %s", (key,)).fetchone()
        if row is not None:
            session = codec.decode(session_id, row[0], row[1])
            if self.lifetime.is_live(session, now):
                return None
            # an expired row not yet swept: keep only why it ended, from here on
            end = self.lifetime.end_of(session)
            with self._write() as db:
                db.execute("DELETE FROM sessions WHERE id = %s", (key,))
                self._put_end(db, key, end)
        else:
            with self._db() as db:
                found = db.execute("SELECT data FROM session_ends WHERE key = %s", (key,)).fetchone()
            end = codec.decode_end(found[0]) if found else None
        return end if end is not None and now < end.kept_until() else None

    def sessions_of(self, subject: str, now: int) -> list[Session]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id, data, last_seen FROM sessions WHERE subject = %s AND %s < hard_expiry "  # noqa: S608
                f"AND %s - last_seen <= %s AND {_KEYED} ORDER BY created_at, id",
                (subject, now, now, self.lifetime.inactivity)).fetchall()
        return [codec.decode(SessionKey(key), data, last_seen) for key, data, last_seen in rows]

    # refresh tokens ----------------------------------------------------------------------
    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any], expires_at: int,
                    now: int | None = None, *, access: AccessToken | None = None) -> None:
        with self._db() as db:
            db.execute(_INSERT_REFRESH, (token_key, family_id, json.dumps(data), expires_at,
                                         *(access or (None, None))))

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int, *,
                       access: AccessToken | None = None) -> RefreshRotation:
        with self._write() as db:
            found = db.execute("SELECT family FROM refresh WHERE key = %s", (old_key,)).fetchone()
            if found is None:
                return RefreshRotation("unknown")
            # the family's lock first, the row's after (as revoke_family takes them, so the two never
            # deadlock): a revocation cannot miss a successor this rotation inserts, and concurrent
            # presentations of one token queue: the first rotates, the next finds it spent and
            # revokes the family (RFC 9700 §4.14.2)
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (found[0],))
            row = db.execute("SELECT family, data, spent FROM refresh WHERE key = %s AND %s < expires_at "
                             "FOR UPDATE", (old_key, now)).fetchone()
            if row is None:
                return RefreshRotation("unknown")
            family, data, spent = row
            if spent:
                self._revoke(db, family, now)
                return RefreshRotation("reused", family, json.loads(data))
            db.execute("UPDATE refresh SET spent = TRUE WHERE key = %s", (old_key,))
            db.execute(_INSERT_REFRESH, (new_key, family, data, expires_at, *(access or (None, None))))
            return RefreshRotation("ok", family, json.loads(data))

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        with self._db() as db:
            row = db.execute("SELECT family, data FROM refresh WHERE key = %s AND %s < expires_at "
                             "AND NOT spent", (token_key, now)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def revoke_family(self, family_id: str, now: int | None = None) -> None:
        with self._write() as db:
            # under the family's lock, the DELETE's snapshot (taken after it) sees every successor
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (family_id,))
            self._revoke(db, family_id, now)

    @staticmethod
    def _revoke(db: psycopg.Connection[Any], family_id: str, now: int | None) -> None:
        """Delete the family's tokens; its live access tokens become revoked jtis (one statement)."""
        db.execute("WITH gone AS (DELETE FROM refresh WHERE family = %s RETURNING access, access_expires) "
                   "INSERT INTO jtis (ns, jti, expires_at) SELECT %s, access, max(access_expires) FROM gone "
                   "WHERE access IS NOT NULL AND %s < access_expires GROUP BY access ON CONFLICT (ns, jti) "
                   "DO UPDATE SET expires_at = GREATEST(jtis.expires_at, excluded.expires_at)",
                   (family_id, REVOKED_ACCESS_TOKENS, _now(now)))

    # identifiers and counters -----------------------------------------------------------
    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        # one statement: of concurrent inserts PostgreSQL lets exactly one through; a record
        # already expired by the caller's clock may be taken again
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO jtis (ns, jti, expires_at) VALUES (%s, %s, %s) ON CONFLICT (ns, jti) "
                "DO UPDATE SET expires_at = excluded.expires_at WHERE jtis.expires_at <= %s",
                (namespace, jti, expires_at, now if now is not None else -1))
            return cursor.rowcount == 1

    def use_jtis(self, entries: Sequence[tuple[str, str, int]], now: int | None = None) -> tuple[bool, ...]:
        # one statement may not touch a row twice: a repeated entry is answered as already used
        distinct: dict[tuple[str, str], tuple[str, str, int]] = {}
        for entry in entries:
            distinct.setdefault(entry[:2], entry)
        if not distinct:
            return ()
        with self._db() as db:
            params = (*itertools.chain.from_iterable(distinct.values()), now if now is not None else -1)
            taken = set(db.execute(_use_jtis_sql(len(distinct)), params).fetchall())
        answers = []
        for namespace, jti, _ in entries:
            answers.append((namespace, jti) in taken)
            taken.discard((namespace, jti))  # a second copy of an entry finds it used
        return tuple(answers)

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        with self._db() as db:
            row = db.execute("SELECT 1 FROM jtis WHERE ns = %s AND jti = %s AND %s < expires_at",
                             (namespace, jti, now)).fetchone()
        return row is not None

    def intact_since(self) -> int:
        return 0  # nothing acknowledged is lost

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        start = now - now % window
        with self._db() as db:
            (count,) = db.execute(
                "INSERT INTO counters (key, start, count, expires_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (key, start) DO UPDATE SET count = counters.count + excluded.count "
                "RETURNING count", (key, start, amount, start + window)).fetchone()
        return int(count), start + window

    # per-subject token cut-off ------------------------------------------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        with self._db() as db:
            db.execute("INSERT INTO not_before (subject, at, expires_at) VALUES (%s, %s, %s) "
                       "ON CONFLICT (subject) DO UPDATE SET at = excluded.at, "
                       "expires_at = excluded.expires_at WHERE excluded.at > not_before.at",
                       (subject, at, expires_at))

    def not_before(self, subject: str, now: int) -> int:
        with self._db() as db:
            row = db.execute("SELECT at FROM not_before WHERE subject = %s", (subject,)).fetchone()
        return int(row[0]) if row else 0

    # credentials set at run time ------------------------------------------------------------
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT INTO credentials (subject, id, data) VALUES (%s, %s, %s) "
                       "ON CONFLICT (subject, id) DO UPDATE SET data = excluded.data",
                       (subject, credential_id, _record_text(record)))

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT id, data FROM credentials WHERE subject = %s", (subject,)).fetchall()
        return {cid: json.loads(data) for cid, data in rows}

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        # one UPDATE whose WHERE holds the old text: of two racing replacements one matches (the
        # row lock makes the second re-read the row the first wrote), as WebAuthn's counter needs
        with self._db() as db:
            cursor = db.execute("UPDATE credentials SET data = %s WHERE subject = %s AND id = %s "
                                "AND data = %s",
                                (_record_text(new), subject, credential_id, _record_text(old)))
            return cursor.rowcount == 1

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        with self._db() as db:
            cursor = db.execute("DELETE FROM credentials WHERE subject = %s AND id = %s",
                                (subject, credential_id))
            return cursor.rowcount == 1

    # housekeeping ---------------------------------------------------------------------------
    def ping(self) -> None:
        """Return once a pooled connection answers a query within the timeout."""
        with self._db() as db:
            db.execute("SELECT 1")

    def sweep(self, now: int) -> int:
        with self._write(8 * self.deadline) as db:  # seven statements, each within the server's timeout
            rows = db.execute("DELETE FROM sessions WHERE %s >= hard_expiry OR %s - last_seen > %s "
                              "RETURNING id, data, last_seen",
                              (now, now, self.lifetime.inactivity)).fetchall()
            for stored, data, last_seen in rows:
                key = stored_session_key(stored)  # None: a row keyed by its id in the clear (an old database)
                end = self.lifetime.end_of(codec.decode(stored, data, last_seen))
                if key is not None and now < end.kept_until():
                    self._put_end(db, key, end)
            removed = len(rows)
            # a refresh token's row stays while the access token issued with it lives (_revoke)
            removed += db.execute("DELETE FROM refresh WHERE %s >= GREATEST(expires_at, access_expires)",
                                  (now,)).rowcount
            for table in ("jtis", "counters", "session_ends", "not_before"):
                # table names come from this tuple, never from input
                removed += db.execute(f"DELETE FROM {table} WHERE %s >= expires_at", (now,)).rowcount  # noqa: S608
        return removed

    def close(self) -> None:
        with self._held_lock:
            for db in self._held.values():
                with contextlib.suppress(Exception):
                    self.pool.putconn(db)
            self._held.clear()
        self._local = threading.local()
        self.pool.close()
        self._deadlines.close()


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _now(now: int | None) -> int:
    """Return ``now``, or the wall clock's second when a caller has none (the edge)."""
    return int(time.time()) if now is None else now


# A token's row also names the access token issued with it (``access``, ``access_expires``): the
# family's rows, spent ones included, hold every access token a revocation must take along.
_INSERT_REFRESH = ("INSERT INTO refresh (key, family, data, expires_at, spent, access, access_expires) "
                   "VALUES (%s, %s, %s, %s, FALSE, %s, %s) ON CONFLICT (key) DO UPDATE SET "
                   "family = excluded.family, data = excluded.data, expires_at = excluded.expires_at, "
                   "spent = FALSE, access = excluded.access, access_expires = excluded.access_expires")
