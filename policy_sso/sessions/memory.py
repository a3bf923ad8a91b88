"""The in-memory store: for tests and single-process development. One lock guards everything."""

from __future__ import annotations

import copy
import heapq
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

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
)

MAX_END_RECORDS = 10_000  # records of why sessions ended; the oldest go first past this


class MemoryStore:
    """Implements :class:`~policy_sso.sessions.store.Store` with dicts; expiry checked on read."""

    loses_records = False  # its records end with its process, which is for tests and demos

    def __init__(self, lifetime: SessionLifetime, options: StoreOptions | None = None) -> None:
        self.lifetime = lifetime
        self.max_sessions_per_user = (options or StoreOptions()).max_sessions_per_user
        self._not_before: dict[str, tuple[int, int]] = {}  # subject -> (cut-off, kept until)
        self._credentials: dict[str, dict[str, dict[str, Any]]] = {}  # subject -> id -> record
        self._lock = threading.RLock()
        self._sessions: dict[SessionKey, Session] = {}  # its id replaced by its key
        self._by_subject: dict[str, set[SessionKey]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}  # key -> {family, data, expires_at, spent}
        self._access: dict[str, dict[str, int]] = {}  # refresh family -> its access tokens' jti -> expiry
        self._jtis: dict[tuple[str, str], int] = {}
        self._counters: dict[tuple[str, int], tuple[int, int]] = {}  # (key, start) -> (count, reset)
        self._ends: dict[SessionKey, SessionEnd] = {}  # session_key(session id) -> why it ended, oldest first

    # sessions ---------------------------------------------------------------------
    # Sessions are kept under their key (session_key), their id replaced by it: the ids callers
    # hold are given back on the way out (_as), never kept.
    def _live(self, key: SessionKey, now: int) -> Session | None:
        session = self._sessions.get(key)
        if session is None:
            return None
        if not self.lifetime.is_live(session, now):
            self._drop(key)
            self.record_session_end(key, self.lifetime.end_of(session))
            return None
        return session

    def _drop(self, key: SessionKey) -> Session | None:
        session = self._sessions.pop(key, None)
        if session is not None:
            keys = self._by_subject.get(session.subject)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_subject[session.subject]
        return session

    def _put(self, session: Session) -> SessionKey:
        key = session_key(session.id)
        self._sessions[key] = session if session.id is key else replace(session, id=key)
        self._by_subject.setdefault(session.subject, set()).add(key)
        return key

    def create_session(self, session: Session) -> list[Session]:
        with self._lock:
            new = self._put(session)
            keys = self._by_subject[session.subject]
            if len(keys) <= self.max_sessions_per_user:  # O(1) below the bound
                return []
            live = [s for key in list(keys) if key != new
                    and (s := self._live(key, session.last_seen)) is not None]
            over = len(live) + 1 - self.max_sessions_per_user
            if over <= 0:
                return []
            oldest = heapq.nsmallest(over, live, key=lambda s: (s.created_at, s.id))
            return [s for old in oldest if (s := self._drop(session_key(old.id))) is not None]

    def get_session(self, session_id: str, now: int) -> Session | None:
        with self._lock:
            return _as(self._live(session_key(session_id), now), session_id)

    def touch_session(self, session_id: str, now: int) -> None:
        self.get_and_touch(session_id, now)

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        with self._lock:
            session = self._live(session_key(session_id), now)
            if session is not None and now - session.last_seen >= self.lifetime.touch_interval:
                self._put(replace(session, last_seen=now))
            return _as(session, session_id)

    def _update(self, session_id: str, now: int, change: Any) -> Session | None:
        with self._lock:
            key = session_key(session_id)
            session = _as(self._live(key, now), session_id)
            if session is None:
                return None
            updated = change(session)
            if updated is session:
                return session
            if updated.id != session_id:
                self._drop(key)
            self._put(updated)
            return updated

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
        with self._lock:
            key = session_key(session_id)
            session = self._drop(key)
            if session is not None:
                self.record_session_end(key, SessionEnd(reason, _now(now)))
            return _as(session, session_id)

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        with self._lock:
            return [s for key in list(self._by_subject.get(subject, ()))
                    if (s := self.end_session(key, reason, now))]

    # why sessions ended --------------------------------------------------------------
    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        with self._lock:
            key = session_key(session_id)
            self._ends.pop(key, None)
            while len(self._ends) >= MAX_END_RECORDS:
                del self._ends[next(iter(self._ends))]
            self._ends[key] = end

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        with self._lock:
            key = session_key(session_id)
            if self._live(key, now) is not None:
                return None
            end = self._ends.get(key)
            return end if end is not None and now < end.kept_until() else None

    def sessions_of(self, subject: str, now: int) -> list[Session]:
        with self._lock:
            return [s for key in list(self._by_subject.get(subject, ())) if (s := self._live(key, now))]

    # refresh tokens -------------------------------------------------------------------
    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any], expires_at: int,
                    now: int | None = None, *, access: AccessToken | None = None) -> None:
        with self._lock:
            self._refresh[token_key] = {"family": family_id, "data": copy.deepcopy(data),
                                        "expires_at": expires_at, "spent": False}
            self._record_access(family_id, access)

    def _record_access(self, family_id: str, access: AccessToken | None) -> None:
        if access is not None:
            self._access.setdefault(family_id, {})[access[0]] = access[1]

    def _refresh_record(self, token_key: str, now: int) -> dict[str, Any] | None:
        record = self._refresh.get(token_key)
        if record is None or now >= record["expires_at"]:
            return None
        return record

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int, *,
                       access: AccessToken | None = None) -> RefreshRotation:
        with self._lock:
            record = self._refresh_record(old_key, now)
            if record is None:
                return RefreshRotation("unknown")
            if record["spent"]:
                self.revoke_family(record["family"], now)
                return RefreshRotation("reused", record["family"], copy.deepcopy(record["data"]))
            record["spent"] = True
            self.put_refresh(new_key, record["family"], record["data"], expires_at, access=access)
            return RefreshRotation("ok", record["family"], copy.deepcopy(record["data"]))

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            record = self._refresh_record(token_key, now)
            if record is None or record["spent"]:
                return None
            return record["family"], copy.deepcopy(record["data"])

    def revoke_family(self, family_id: str, now: int | None = None) -> None:
        with self._lock:
            for key in [k for k, r in self._refresh.items() if r["family"] == family_id]:
                del self._refresh[key]
            at = _now(now)
            for jti, expires_at in self._access.pop(family_id, {}).items():
                if at < expires_at:
                    key = (REVOKED_ACCESS_TOKENS, jti)
                    self._jtis[key] = max(expires_at, self._jtis.get(key, 0))

    # identifiers and counters --------------------------------------------------------
    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        with self._lock:
            key = (namespace, jti)
            if key in self._jtis and (now is None or now < self._jtis[key]):
                return False
            self._jtis[key] = expires_at
            return True

    def use_jtis(self, entries: Sequence[tuple[str, str, int]], now: int | None = None) -> tuple[bool, ...]:
        return tuple(self.use_jti(*entry, now) for entry in entries)

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        with self._lock:
            expires_at = self._jtis.get((namespace, jti))
            return expires_at is not None and now < expires_at

    def intact_since(self) -> int:
        return 0  # nothing acknowledged is lost

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        with self._lock:
            start = now - now % window
            count = self._counters.get((key, start), (0, 0))[0] + amount
            self._counters[(key, start)] = (count, start + window)
            return count, start + window

    # housekeeping ----------------------------------------------------------------------
    # per-subject token cut-off ------------------------------------------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        with self._lock:
            if at > self._not_before.get(subject, (0, 0))[0]:
                self._not_before[subject] = (at, expires_at)

    def not_before(self, subject: str, now: int) -> int:
        with self._lock:
            return self._not_before.get(subject, (0, 0))[0]

    # credentials set at run time ---------------------------------------------------------
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._credentials.setdefault(subject, {})[credential_id] = copy.deepcopy(record)

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._credentials.get(subject, {}))

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        with self._lock:
            held = self._credentials.get(subject, {})
            if held.get(credential_id) != old:
                return False
            held[credential_id] = copy.deepcopy(new)
            return True

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        with self._lock:
            return self._credentials.get(subject, {}).pop(credential_id, None) is not None

    def ping(self) -> None:
        """Return at once: memory is always there."""

    def sweep(self, now: int) -> int:
        with self._lock:
            removed = 0
            for subject in [k for k, (_, until) in self._not_before.items() if now >= until]:
                del self._not_before[subject]
                removed += 1
            for key in [key for key, s in self._sessions.items() if not self.lifetime.is_live(s, now)]:
                end = self.lifetime.end_of(self._drop(key))  # type: ignore[arg-type]
                if now < end.kept_until():
                    self.record_session_end(key, end)
                removed += 1
            for key in [k for k, end in self._ends.items() if now >= end.kept_until()]:
                del self._ends[key]
                removed += 1
            for key in [k for k, r in self._refresh.items() if now >= r["expires_at"]]:
                del self._refresh[key]
                removed += 1
            for family, tokens in list(self._access.items()):
                for jti in [j for j, exp in tokens.items() if now >= exp]:
                    del tokens[jti]
                    removed += 1
                if not tokens:
                    del self._access[family]
            for key in [k for k, exp in self._jtis.items() if now >= exp]:
                del self._jtis[key]
                removed += 1
            for key in [k for k, (_, reset) in self._counters.items() if now >= reset]:
                del self._counters[key]
                removed += 1
            return removed

    def close(self) -> None:
        """Nothing to release."""


def _as(session: Session | None, session_id: str) -> Session | None:
    """Return the stored session (or None) under the id the caller named it by."""
    if session is None or session.id is session_id:
        return session
    return replace(session, id=session_id)


def _now(now: int | None) -> int:
    """Return ``now``, or the wall clock's second when a caller has none (the edge)."""
    return int(time.time()) if now is None else now
