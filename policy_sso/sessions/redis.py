"""The Redis store: several server instances share sessions, tokens, used identifiers and counters.

Each record stores its absolute expiry, checked against the ``now`` every call
passes, so limits hold to the second whatever Redis's own clock says; its TTL,
relative to that ``now``, only cleans up. Every read-modify-write runs as a
Lua script, which Redis executes atomically: two instances updating one
session lose nothing, and an identifier (a code, a jti) is used once. A session is one string
(last-seen, hard expiry, JSON): a read is one GET, a get-and-touch one
script call (one round trip) that rewrites the last-seen digits in place, at
most once per ``touch_interval``.

Some scripts reach keys they derive (a family's tokens, a subject's
sessions) rather than keys passed in ``KEYS``: fine on one server or a
replicated one, not on Redis Cluster.

A subject's sessions are indexed in a sorted set ranked by creation, so
creating one costs O(log n) and the oldest end first once the subject holds
``max_sessions_per_user`` (issue 14). Ids whose session ran out by TTL stay
in the index until a read of the subject's sessions or an eviction drops
them, and count against the bound meanwhile.

Faults: every call waits at most the store timeout (socket connect and read
timeouts), is retried only once and only on a dropped connection, and any
Redis error becomes :class:`~policy_sso.errors.StoreUnavailable`. redis-py
reconnects on the next call, and a script the server forgot in a restart
(``NOSCRIPT``) is loaded again by the call that finds it missing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from policy_sso.errors import StoreError
from policy_sso.sessions import codec
from policy_sso.sessions.model import (
    ABSOLUTE_LIFETIME_EXCEEDED,
    END_RECORD_TTL,
    INACTIVITY_TIMEOUT,
    LOGGED_OUT,
    SESSION_EXPIRED,
    AuthEvent,
    ClientJoin,
    Device,
    Session,
    SessionEnd,
    SessionLifetime,
)
from policy_sso.sessions.store import RefreshRotation, StoreOptions, token_key, translate_faults

PREFIX = "psso:"

# compare-and-set of one credential (a passkey's sign count): replaced only while it is as read
_REPLACE_CREDENTIAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
_SESSION = f"{PREFIX}ss:"  # "ss": the string form below (the earlier hash form used "s:")
_HEADER = 22  # last_seen and hard expiry, 11 decimal digits each, before a session's JSON
_DECODED_CACHE = 4096  # decoded sessions kept per store, keyed by their stored text

# A session is one string: last_seen and the hard expiry as fixed-width decimals, then the
# JSON. A read is a GET, and a touch rewrites the first 11 bytes in place (SETRANGE).
# Lua reads both numbers with string.sub; HEADER is their combined width.

# A subject's index: a sorted set of session ids ranked by creation (a per-subject sequence,
# so two sessions made in one second still have an order). It used to be a plain set (the
# legacy key): a script that meets one folds it in first, once.
_INDEX = """
local function migrate(index, legacy)
  if redis.call('EXISTS', legacy) == 1 then
    for _, id in ipairs(redis.call('SMEMBERS', legacy)) do redis.call('ZADD', index, 'NX', 0, id) end
    redis.call('DEL', legacy)
  end
end
local function next_rank(index)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  return (top[2] and tonumber(top[2]) or 0) + 1
end
"""

# KEYS[1] session, KEYS[2] subject index, KEYS[3] legacy set; ARGV value, ttl, id, index ttl,
# session key prefix, max per subject -> {{id, value}, ...}: the live sessions pushed out.
# O(log n) plus one pop per session beyond the bound; each id is added once and popped once.
_CREATE = _INDEX + """
migrate(KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], next_rank(KEYS[2]), ARGV[3])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
local out = {}
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
while over > 0 do
  local id = redis.call('ZPOPMIN', KEYS[2])[1]
  local v = redis.call('GETDEL', ARGV[5] .. id)
  if v then table.insert(out, {id, v}) end
  over = over - 1
end
return out
"""

# KEYS[1] session, KEYS[2] its end plan; ARGV now, touch_interval, inactivity, end record TTL
# -> the value as read, or nil. Moves last_seen forward (never back), only once it is
# touch_interval old, only while live; the end plan's last-seen digits move with it.
_GET_AND_TOUCH = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
local now, idle = tonumber(ARGV[1]), tonumber(ARGV[3])
local last, hard = tonumber(string.sub(v, 1, 11)), tonumber(string.sub(v, 12, 22))
if now >= hard or now - last > idle then return false end
if now - last >= tonumber(ARGV[2]) then
  redis.call('SETRANGE', KEYS[1], 0, string.format('%011d', now))
  redis.call('EXPIRE', KEYS[1], math.max(1, math.min(hard, now + idle + 1) - now))
  if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('SETRANGE', KEYS[2], 0, string.format('%011d', now))
    redis.call('EXPIRE', KEYS[2], math.max(1, math.min(hard, now + idle + 1) - now) + tonumber(ARGV[4]))
  end
end
return v
"""

# KEYS[1] session; ARGV expected JSON, new JSON, new hard (11 digits), now, inactivity
# -> 1 when written, 0 when the session is gone, -1 when it changed meanwhile (retry).
# last_seen is kept as stored (a concurrent touch may have moved it) and sets the TTL.
_COMPARE_AND_SET = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local now, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local last, hard = tonumber(string.sub(v, 1, 11)), tonumber(string.sub(v, 12, 22))
if now >= hard or now - last > idle then return 0 end
if string.sub(v, 23) ~= ARGV[1] then return -1 end
local ttl = math.max(1, math.min(tonumber(ARGV[3]), last + idle + 1) - now)
redis.call('SET', KEYS[1], string.sub(v, 1, 11) .. ARGV[3] .. ARGV[2], 'EX', ttl)
return 1
"""

# KEYS[1] old session, KEYS[2] new session, KEYS[3] subject index, KEYS[4] legacy set;
# ARGV expected JSON, new value, ttl, old id, new id, now, inactivity.
# The new id takes the old one's rank: re-authenticating keeps a session's age.
_MOVE = _INDEX + """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local now, idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local last, hard = tonumber(string.sub(v, 1, 11)), tonumber(string.sub(v, 12, 22))
if now >= hard or now - last > idle then return 0 end
if string.sub(v, 23) ~= ARGV[1] then return -1 end
migrate(KEYS[3], KEYS[4])
redis.call('DEL', KEYS[1])
local rank = redis.call('ZSCORE', KEYS[3], ARGV[4]) or next_rank(KEYS[3])
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], rank, ARGV[5])
return 1
"""

# KEYS[1] subject index, KEYS[2] legacy set; ARGV session key prefix -> {{id, value}, ...}, oldest
# first; drops ids whose session has gone. The index holds at most the bound: O(bound).
_OF_SUBJECT = _INDEX + """
migrate(KEYS[1], KEYS[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then table.insert(out, {id, v}) else redis.call('ZREM', KEYS[1], id) end
end
return out
"""

# KEYS[1] subject index, KEYS[2] legacy set; ARGV session key prefix, batch size ->
# {popped, {id, value}, ...}: ends the oldest ``batch`` sessions in one atomic step (each id is
# unindexed and its session deleted together, so none is left half-ended); the caller repeats
# until fewer come back, so ending thousands never holds Redis for long.
_END_BATCH = _INDEX + """
migrate(KEYS[1], KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
local out = {#popped / 2}
for i = 1, #popped, 2 do
  local v = redis.call('GETDEL', ARGV[1] .. popped[i])
  if v then table.insert(out, {popped[i], v}) end
end
return out
"""
_END_BATCH_SIZE = 256

# KEYS[1] a subject's token cut-off; ARGV at, ttl: a later cut-off is never replaced by an earlier one.
_NOT_BEFORE = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
"""

# KEYS[1] old token, KEYS[2] new token; ARGV prefix, new expiry, now
_ROTATE = """
local v = redis.call('HMGET', KEYS[1], 'family', 'data', 'spent', 'exp')
local now = tonumber(ARGV[3])
if not v[1] or now >= tonumber(v[4]) then return {'unknown'} end
local fam = ARGV[1] .. 'fam:' .. v[1]
if v[3] == '1' then
  for _, key in ipairs(redis.call('SMEMBERS', fam)) do redis.call('DEL', key) end
  redis.call('DEL', fam)
  return {'reused', v[1]}
end
local exp = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'spent', '1')
redis.call('HSET', KEYS[2], 'family', v[1], 'data', v[2], 'spent', '0', 'exp', exp)
redis.call('EXPIRE', KEYS[2], math.max(1, exp - now))
redis.call('SADD', fam, KEYS[2])
if redis.call('TTL', fam) < exp - now then redis.call('EXPIRE', fam, math.max(1, exp - now)) end
return {'ok', v[1], v[2]}
"""

# KEYS[1] family set: its tokens and the set go at once, so a rotation cannot slip a
# successor in between reading the members and deleting them.
_REVOKE = """
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
"""

# KEYS[1] jti; ARGV expires_at, ttl, now ('' without one) -> 1 recorded, 0 replay.
# A record already expired by the caller's clock may be taken again.
_USE_JTI = """
local recorded = redis.call('GET', KEYS[1])
if recorded and (ARGV[3] == '' or tonumber(recorded) > tonumber(ARGV[3])) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


_END = f"{PREFIX}end:"  # why a session ended, keyed by token_key(session id)

# A session's end record is written when the session is: its "plan", last-seen (11 digits,
# moved by each touch) and the hard limit it reaches first (JSON), so once Redis has let the
# session itself expire, why and when can still be told. Ending a session explicitly
# replaces the plan with the reason (JSON, starting with '{').


def _ttl(expires_at: int, now: int | None) -> int:
    """Return a TTL (at least 1 s) from ``now``, or from the wall clock without one."""
    return max(1, expires_at - (int(time.time()) if now is None else now))


@translate_faults(redis.RedisError)
class RedisStore:
    """Implements :class:`~policy_sso.sessions.store.Store` on a Redis server."""

    def __init__(self, url: str, lifetime: SessionLifetime, options: StoreOptions | None = None) -> None:
        options = options or StoreOptions()
        self.lifetime = lifetime
        self.max_sessions_per_user = options.max_sessions_per_user
        try:
            # Timeouts in the URL win (redis-py's query string overrides these). One retry, at
            # once, only for a dropped connection: redis-py's default (10 retries with backoff)
            # held every request for seconds while Redis was paused (issue 14).
            self.redis = redis.Redis.from_url(
                url, socket_timeout=options.timeout, socket_connect_timeout=options.timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
            self.redis.ping()
        except redis.RedisError as err:
            raise StoreError(f"cannot reach Redis at {url.rsplit('@', 1)[-1]}: {err}") from None
        self._create = self.redis.register_script(_CREATE)
        self._get_and_touch = self.redis.register_script(_GET_AND_TOUCH)
        self._of_subject = self.redis.register_script(_OF_SUBJECT)
        self._end_batch = self.redis.register_script(_END_BATCH)
        self._not_before = self.redis.register_script(_NOT_BEFORE)
        self._replace_credential = self.redis.register_script(_REPLACE_CREDENTIAL)
        self._revoke = self.redis.register_script(_REVOKE)
        self._use_jti = self.redis.register_script(_USE_JTI)
        self._compare_and_set = self.redis.register_script(_COMPARE_AND_SET)
        self._move = self.redis.register_script(_MOVE)
        self._rotate = self.redis.register_script(_ROTATE)
        self._decoded: dict[tuple[str, bytes], Session] = {}

    @staticmethod
    def _s(session_id: str) -> str:
        return f"{_SESSION}{session_id}"

    @staticmethod
    def _subject(subject: str) -> str:
        """Return the key of the subject's session index (a sorted set)."""
        return f"{PREFIX}uz:{subject}"

    @staticmethod
    def _index(subject: str) -> list[str]:
        """Return the subject's index key and its legacy index key (a plain set, folded in once)."""
        return [f"{PREFIX}uz:{subject}", f"{PREFIX}u:{subject}"]

    # sessions --------------------------------------------------------------------------
    def _hard(self, session: Session) -> int:
        return min(session.auth_time + self.lifetime.sliding, session.created_at + self.lifetime.absolute) + 1

    def _session_ttl(self, session: Session, now: int) -> int:
        return max(1, min(self._hard(session), session.last_seen + self.lifetime.inactivity + 1) - now)

    def _value(self, session: Session) -> str:
        """Return the stored form of a session: last-seen and hard expiry digits, then its JSON."""
        return f"{session.last_seen:011d}{self._hard(session):011d}{codec.encode(session)}"

    def _decode(self, session_id: str, value: bytes) -> Session:
        """Return the session a stored value holds, reusing the object decoded from the same value."""
        session = self._decoded.get((session_id, value))
        if session is None:  # sessions are immutable: the same stored value decodes to the same one
            session = codec.decode(session_id, value[_HEADER:], int(value[:11]))
            if len(self._decoded) >= _DECODED_CACHE:
                self._decoded.clear()
            self._decoded[(session_id, value)] = session
        return session

    def _live(self, value: bytes, now: int) -> bool:
        return now < int(value[11:_HEADER]) and now - int(value[:11]) <= self.lifetime.inactivity

    def create_session(self, session: Session) -> list[Session]:
        rows = self._create(keys=[self._s(session.id), *self._index(session.subject)],
                            args=[self._value(session), self._session_ttl(session, session.last_seen),
                                  session.id, self.lifetime.absolute + 86400, _SESSION,
                                  self.max_sessions_per_user])
        self._plan_end(session, session.last_seen)
        return [self._decode(sid.decode(), value) for sid, value in rows]

    def _read(self, session_id: str, now: int) -> tuple[Session, bytes] | None:
        """Return the live session and its stored value, in one GET."""
        value = self.redis.get(self._s(session_id))
        if value is None or not self._live(value, now):
            return None
        return self._decode(session_id, value), value

    def get_session(self, session_id: str, now: int) -> Session | None:
        found = self._read(session_id, now)
        return found[0] if found else None

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        """Return the live session as read, touching it in the same script call (one round trip)."""
        key, plan = _SESSION + session_id, _END + token_key(session_id)
        try:
            # EVALSHA by hand: the Script wrapper's per-call bookkeeping costs ~5% of a round trip
            value = self.redis.execute_command("EVALSHA", self._get_and_touch.sha, 2, key, plan, now,
                                               self.lifetime.touch_interval, self.lifetime.inactivity,
                                               END_RECORD_TTL)
        except redis.exceptions.NoScriptError:  # first call, or the server's script cache was flushed
            value = self._get_and_touch(keys=[key, plan], args=[now, self.lifetime.touch_interval,
                                                                self.lifetime.inactivity, END_RECORD_TTL])
        return self._decode(session_id, value) if value else None

    def touch_session(self, session_id: str, now: int) -> None:
        self.get_and_touch(session_id, now)

    def _update(self, session_id: str, now: int, change: Any) -> Session | None:
        """Read, change, and compare-and-set atomically in Lua; retry if it changed meanwhile."""
        while True:
            found = self._read(session_id, now)
            if found is None:
                return None
            session, stored = found
            updated = change(session)
            if updated is session:
                return session
            if updated.id == session_id:
                result = self._compare_and_set(
                    keys=[self._s(session_id)],
                    args=[stored[_HEADER:], codec.encode(updated), f"{self._hard(updated):011d}", now,
                          self.lifetime.inactivity])
            else:
                result = self._move(
                    keys=[self._s(session_id), self._s(updated.id), *self._index(session.subject)],
                    args=[stored[_HEADER:], self._value(updated), self._session_ttl(updated, now),
                          session_id, updated.id, now, self.lifetime.inactivity])
            if result == 1:
                if updated.id != session_id:  # a re-authentication: the old id is simply gone
                    self._plan_end(updated, now, old_id=session_id)
                return updated
            if result == 0:
                return None

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
        value = self.redis.getdel(self._s(session_id))
        if value is None:
            return None
        session = self._decode(session_id, value)
        self.redis.zrem(self._subject(session.subject), session_id)
        self.record_session_end(session_id, SessionEnd(reason, _now(now)))
        return session

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        ended: list[Session] = []
        while True:  # in batches: ending thousands never holds Redis for long
            popped, *rows = self._end_batch(keys=self._index(subject), args=[_SESSION, _END_BATCH_SIZE])
            ended += [self._decode(sid.decode(), value) for sid, value in rows]
            if popped < _END_BATCH_SIZE:
                break
        with self.redis.pipeline(transaction=False) as pipe:
            for session in ended:
                pipe.set(_END + token_key(session.id), codec.encode_end(SessionEnd(reason, _now(now))),
                         ex=END_RECORD_TTL)
            pipe.execute()
        return ended

    # why sessions ended ------------------------------------------------------------------
    def _plan_end(self, session: Session, now: int, old_id: str | None = None) -> None:
        """Write the session's end plan: its last-seen and the hard limit it reaches first."""
        sliding = SessionEnd(SESSION_EXPIRED, session.auth_time + self.lifetime.sliding + 1,
                             self.lifetime.sliding)
        absolute = SessionEnd(ABSOLUTE_LIFETIME_EXCEEDED, session.created_at + self.lifetime.absolute + 1,
                              self.lifetime.absolute)
        hard = sliding if sliding.at <= absolute.at else absolute
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(_END + token_key(session.id), f"{session.last_seen:011d}{codec.encode_end(hard)}",
                     ex=self._session_ttl(session, now) + END_RECORD_TTL)
            if old_id is not None:
                pipe.delete(_END + token_key(old_id))
            pipe.execute()

    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        # the TTL only cleans up: session_end checks kept_until against the caller's now
        self.redis.set(_END + token_key(session_id), codec.encode_end(end), ex=END_RECORD_TTL)

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        value = self.redis.get(self._s(session_id))
        if value is not None:
            if self._live(value, now):
                return None
            # expired by the caller's clock before Redis's TTL ran out: keep only the reason
            session = self._decode(session_id, value)
            end = self.lifetime.end_of(session)
            self.redis.delete(self._s(session_id))
            self.redis.zrem(self._subject(session.subject), session_id)
            self.record_session_end(session_id, end)
        else:
            stored = self.redis.get(_END + token_key(session_id))
            if stored is None:
                return None
            if stored.startswith(b"{"):
                end = codec.decode_end(stored)
            else:  # a plan: the session went when Redis's TTL ran out, at the first limit it reached
                idle = self.lifetime.inactivity
                hard = codec.decode_end(stored[11:])
                inactive = SessionEnd(INACTIVITY_TIMEOUT, int(stored[:11]) + idle + 1, idle)
                end = hard if hard.at <= inactive.at else inactive
                if now < end.at:
                    return None  # gone before any limit, by no end this store recorded
        return end if now < end.kept_until() else None

    def sessions_of(self, subject: str, now: int) -> list[Session]:
        rows = self._of_subject(keys=self._index(subject), args=[_SESSION])
        return [self._decode(sid.decode(), value) for sid, value in rows if self._live(value, now)]

    # refresh tokens --------------------------------------------------------------------
    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any], expires_at: int,
                    now: int | None = None) -> None:
        key, family = f"{PREFIX}r:{token_key}", f"{PREFIX}fam:{family_id}"
        ttl = _ttl(expires_at, now)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"family": family_id, "data": json.dumps(data), "spent": "0",
                                    "exp": expires_at})
            pipe.expire(key, ttl)
            pipe.sadd(family, key)
            pipe.expire(family, ttl, gt=True)
            pipe.expire(family, ttl, nx=True)
            pipe.execute()

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int) -> RefreshRotation:
        result = self._rotate(keys=[f"{PREFIX}r:{old_key}", f"{PREFIX}r:{new_key}"],
                              args=[PREFIX, expires_at, now])
        status = result[0].decode()
        if status == "unknown":
            return RefreshRotation("unknown")
        return RefreshRotation(status, result[1].decode(), json.loads(result[2]) if status == "ok" else None)

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        family, data, spent, exp = self.redis.hmget(f"{PREFIX}r:{token_key}",
                                                    "family", "data", "spent", "exp")
        if family is None or spent == b"1" or now >= int(exp):
            return None
        return family.decode(), json.loads(data)

    def revoke_family(self, family_id: str) -> None:
        self._revoke(keys=[f"{PREFIX}fam:{family_id}"])

    # identifiers and counters ------------------------------------------------------------
    @staticmethod
    def _jti(namespace: str, jti: str) -> str:
        # the namespace's length goes first: namespaces hold colons (hint issuers are URLs),
        # and ("hint:https://a", "8443:j") must not share a key with ("hint:https://a:8443", "j")
        return f"{PREFIX}j:{len(namespace)}:{namespace}:{jti}"

    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        return self._use_jti(keys=[self._jti(namespace, jti)],
                             args=[expires_at, _ttl(expires_at, now), "" if now is None else now]) == 1

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        recorded = self.redis.get(self._jti(namespace, jti))
        return recorded is not None and now < int(recorded)

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        start = now - now % window
        counter = f"{PREFIX}n:{key}:{start}"
        with self.redis.pipeline() as pipe:
            pipe.incrby(counter, amount)
            pipe.expire(counter, start + window - now + 1)
            count, _ = pipe.execute()
        return int(count), start + window

    # per-subject token cut-off ------------------------------------------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        self._not_before(keys=[f"{PREFIX}nb:{subject}"], args=[at, _ttl(expires_at, at)])

    def not_before(self, subject: str, now: int) -> int:
        recorded = self.redis.get(f"{PREFIX}nb:{subject}")
        return int(recorded) if recorded is not None else 0

    # credentials set at run time: one hash per subject, a field per credential ---------------
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        self.redis.hset(f"{PREFIX}cred:{subject}", credential_id, _record_text(record))

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        held = self.redis.hgetall(f"{PREFIX}cred:{subject}")
        return {_text(cid): json.loads(data) for cid, data in held.items()}

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        done = self._replace_credential(keys=[f"{PREFIX}cred:{subject}"],
                                        args=[credential_id, _record_text(old), _record_text(new)])
        return bool(done)

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        return bool(self.redis.hdel(f"{PREFIX}cred:{subject}", credential_id))

    # housekeeping ----------------------------------------------------------------------------
    def ping(self) -> None:
        self.redis.ping()

    def sweep(self, now: int) -> int:
        """Return 0: Redis removes every record when its TTL runs out."""
        return 0

    def close(self) -> None:
        self.redis.close()


def _now(now: int | None) -> int:
    """Return ``now``, or the wall clock's second when a caller has none (the edge)."""
    return int(time.time()) if now is None else now
