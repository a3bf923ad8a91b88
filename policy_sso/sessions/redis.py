"""The Redis store: several server instances share sessions, tokens, used identifiers and counters.

Each record stores its absolute expiry, checked against the ``now`` every call
passes, so limits hold to the second whatever Redis's own clock says; its TTL,
relative to that ``now``, only cleans up. Every read-modify-write of one record
runs as a Lua script, which Redis executes atomically: two instances updating
one session lose nothing, and an identifier (a code, a jti) is used once. A
session is one string (last-seen, hard expiry, JSON): a read is one GET, a
get-and-touch one round trip (a GET while no touch can be due, else a script
call that rewrites the last-seen digits in place, at most once per
``touch_interval``).

Redis Cluster (``redis+cluster://host:port[,host:port...]``) runs the same
class: every script is given every key it touches in ``KEYS``, and those keys
share one hash slot (a key's ``{tag}``):

- a session and its end record: ``psso:{sk:<digest>}`` and ``psso:{sk:<digest>}:end``,
  the digest being the id's SHA-256 (no session id is stored in the clear);
- a refresh family: ``psso:{rf:<family>}`` (a hash, one field a token),
  ``psso:{rf:<family>}:spent`` and ``psso:{rf:<family>}:at`` (the access tokens issued
  with its tokens); a token finds its family through ``psso:rt:<token digest>``, written
  before the family changes;
- a subject's session index ``psso:uz:<subject>`` (of those digests), a jti, a counter, a
  subject's cut-off and its credentials are each one key.

What spans two slots is done in steps, ordered so that a step that never
happens (a crash, a fault) leaves nothing unsafe: a session is written before
it is indexed, and readers of the index drop ids whose session is gone. The
index is therefore not atomic with the sessions: a sign-in that completes
while ``end_sessions_of`` runs for the same subject may keep its new session
(as if it had signed in just after), and a process killed between writing a
session and indexing it leaves that session out of its subject's index until
it expires. A refresh family's revocation writes its access tokens' revocation
records (each ``jti`` a key of its own) before the script that deletes the family,
so a fault in between leaves a family to revoke again, never a deleted one whose
access tokens still work (but for one a rotation racing the revocation issued, which
is written just after the delete). On one server the same steps run.

A subject's sessions are indexed in a sorted set ranked by creation, so
creating one costs O(log n) and the oldest end first once the subject holds
``max_sessions_per_user`` (issue 14). Ids whose session ran out by TTL stay
in the index until a read of the subject's sessions or an eviction drops
them, and count against the bound meanwhile.

Faults: every call waits at most the store timeout (socket connect and read
timeouts), is retried only once and only on a dropped connection (on a
cluster: once, after re-reading the slot map), and any Redis error becomes
:class:`~policy_sso.errors.StoreUnavailable`. redis-py reconnects on the next
call, and a script the server forgot in a restart (``NOSCRIPT``) is loaded
again by the call that finds it missing.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence
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

log = logging.getLogger("policy_sso.store")

PREFIX = "psso:"
# when the dataset began: set (NX) by the first instance to find it missing (RedisStore.intact_since)
EPOCH_KEY = f"{PREFIX}epoch"
# a count every write that ends or withdraws something adds one to (a session ended or moved to a new
# id, a consent withdrawn, a refresh token rotated or its family revoked, a cut-off, a credential
# changed): a dataset that comes back counting less than an instance saw has lost such writes (a
# snapshot, or an AOF, behind the server that stopped), and is taken as replaced (RedisStore._saw)
ENDS_KEY = f"{PREFIX}ends"
EPOCH_CHECK_INTERVAL = 1.0  # seconds between checks besides the one on every new connection

# compare-and-set of one credential (a passkey's sign count): replaced only while it is as read
_REPLACE_CREDENTIAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def _record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
# A session's key is tagged with its id's digest, so its end record shares its slot and no
# id is left in the store. Earlier layouts used "psso:ss:<id>", "psso:s:<id>" and then
# "psso:{s:<digest>}" with the ids in the clear in the subject indexes (and so in every
# dump and backup): sessions stored before are not found any more, and expire.
_SESSION = f"{PREFIX}{{sk:"
_HEADER = 22  # last_seen and hard expiry, 11 decimal digits each, before a session's JSON
_DECODED_CACHE = 4096  # decoded sessions kept per store, keyed by their stored text

# A session is one string: last_seen and the hard expiry as fixed-width decimals, then the
# JSON. A read is a GET, and a touch rewrites the first 11 bytes in place (SETRANGE).
# Lua reads both numbers with string.sub; HEADER is their combined width.

# KEYS[1] session, KEYS[2] its end plan (one slot); ARGV value, ttl, plan, plan ttl.
_PUT_SESSION = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
"""

# A subject's index: a sorted set of session keys (digests) ranked by creation (a per-subject
# sequence, so two sessions made in one second still have an order). It used to be a plain set
# of ids (the legacy key, another slot), then a sorted set of ids: sessions_of and
# end_sessions_of delete the one and drop the ids of the other.

# KEYS[1] subject index; ARGV id, index ttl, max per subject -> {id, rank, ...}: the ids pushed
# out, whose sessions the caller then ends. O(log n) plus one pop per id beyond the bound.
_INDEX_ADD = """
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('ZADD', KEYS[1], (top[2] and tonumber(top[2]) or 0) + 1, ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then return redis.call('ZPOPMIN', KEYS[1], over) end
return {}
"""

# KEYS[1] subject index; ARGV old id, new id: the new id takes the old one's rank
# (re-authenticating keeps a session's age), or the next one if the old id was dropped meanwhile.
_INDEX_MOVE = """
local rank = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not rank then
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  rank = (top[2] and tonumber(top[2]) or 0) + 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], rank, ARGV[2])
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

# KEYS[1] session, KEYS[2] its end plan; ARGV expected JSON, now, inactivity -> 1 when the live
# session was as expected and is now deleted with its plan, 0 when gone, -1 when it changed.
# A re-authentication claims the old id with this before writing the new one: of two racing
# re-authentications one wins, and a fault afterwards loses the session, never duplicates it.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local last, hard = tonumber(string.sub(v, 1, 11)), tonumber(string.sub(v, 12, 22))
if now >= hard or now - last > idle then return 0 end
if string.sub(v, 23) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""
_END_BATCH_SIZE = 256

# KEYS[1] a subject's token cut-off; ARGV at, ttl: a later cut-off is never replaced by an earlier one.
_NOT_BEFORE = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
"""

# A refresh family is one hash (one slot): a field per token digest, "0" or "1" (spent), the
# expiry (11 digits), then the family's data (JSON; a spent token drops it). Spent tokens stay
# for reuse detection until their own expiry; the ``:spent`` sorted set ranks them by it, so
# each rotation drops the ones past it in O(log n).

# A family's access tokens (``:at``, a sorted set in its slot) are ranked by their expiry: each
# rotation drops the expired ones, and the set lives as long as its last token.

# KEYS[1] family, KEYS[2] its spent set, KEYS[3] its access tokens; ARGV token, field value, ttl,
# then the access token's jti, expiry and ttl when there is one: the first of a family
_PUT_REFRESH = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if ARGV[4] then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[4])
  if redis.call('TTL', KEYS[3]) < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[3], ARGV[6]) end
end
"""

# KEYS[1] family, KEYS[2] its spent set, KEYS[3] its access tokens; ARGV old token, new token,
# new expiry, now, then the new access token's jti and expiry when there is one
# -> {'ok', data} | {'reused', data of the family} | {'unknown'}. A spent token presented again
# changes nothing here: the caller then revokes the family (revoke_family), its access tokens first.
_ROTATE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
local now = tonumber(ARGV[4])
if not v or now >= tonumber(string.sub(v, 2, 12)) then return {'unknown'} end
if string.sub(v, 1, 1) == '1' then
  for _, other in ipairs(redis.call('HVALS', KEYS[1])) do  -- a spent token keeps no data: its successor's
    if string.len(other) > 12 then return {'reused', string.sub(other, 13)} end
  end
  return {'reused'}
end
local exp, data = tonumber(ARGV[3]), string.sub(v, 13)
redis.call('HSET', KEYS[1], ARGV[1], '1' .. string.sub(v, 2, 12),
           ARGV[2], '0' .. string.format('%011d', exp) .. data)
redis.call('ZADD', KEYS[2], tonumber(string.sub(v, 2, 12)), ARGV[1])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, 2 do
  if redis.call('TTL', KEYS[i]) < exp - now then redis.call('EXPIRE', KEYS[i], math.max(1, exp - now)) end
end
if ARGV[5] then
  local at = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  redis.call('ZADD', KEYS[3], at, ARGV[5])
  if redis.call('TTL', KEYS[3]) < at - now then redis.call('EXPIRE', KEYS[3], math.max(1, at - now)) end
end
return {'ok', data}
"""

# KEYS[1] family, KEYS[2] its spent set, KEYS[3] its access tokens; ARGV now, mode
# -> {jti, expiry, ...}: the access tokens live at now. Mode 'first': the family is deleted only
# when it has none (else the caller records them revoked, then calls again); 'last': deleted.
_REVOKE_FAMILY = """
local live = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf', 'WITHSCORES')
if ARGV[2] == 'last' or #live == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return live
"""

# KEYS[1] jti; ARGV expires_at, ttl, now ('' without one) -> 1 recorded, 0 replay.
# A record already expired by the caller's clock may be taken again.
_USE_JTI = """
local recorded = redis.call('GET', KEYS[1])
if recorded and (ARGV[3] == '' or tonumber(recorded) > tonumber(ARGV[3])) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""

# KEYS[1] counter; ARGV amount, ttl -> the count: one round trip, and never a counter without a TTL
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
"""


def _raised(answer: Any) -> Any:
    """Return a pipeline's answer to one command, raising it when it is an error."""
    if isinstance(answer, Exception):
        raise answer
    return answer


def _session_key(session_id: str) -> str:
    """Return a session's key, ``psso:{sk:<sha256 of the id>}``: no id in the clear, any id one slot."""
    return f"{_SESSION}{session_key(session_id)}}}"


def _indexed(members: Sequence[bytes]) -> list[SessionKey]:
    """Return the session keys a subject's index holds, leaving out the ids in the clear of older indexes."""
    return [key for member in members if (key := stored_session_key(member.decode())) is not None]


# A session's end record is written when the session is: its "plan", last-seen (11 digits,
# moved by each touch) and the hard limit it reaches first (JSON), so once Redis has let the
# session itself expire, why and when can still be told. Ending a session explicitly
# replaces the plan with the reason (JSON, starting with '{'). Keyed by the id's digest like
# the session, in the session's slot: ``psso:{sk:<digest>}:end``.
def _end_key(session_id: str) -> str:
    """Return the key of a session's end record (the session's slot)."""
    return f"{_SESSION}{session_key(session_id)}}}:end"


def _ttl(expires_at: int, now: int | None) -> int:
    """Return a TTL (at least 1 s) from ``now``, or from the wall clock without one."""
    return max(1, expires_at - (int(time.time()) if now is None else now))


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_CLUSTER_QUERY = ("socket_timeout", "socket_connect_timeout")


def connect(url: str, timeout: float, on_connect: Callable[[Any], None] | None = None) -> Any:
    """Return a redis-py client for ``url``: a ``Redis``, or a ``RedisCluster`` for a cluster URL.

    ``redis+cluster://[user:password@]host:port[,host:port...][/0]`` (``rediss+cluster`` for
    TLS) names some of a cluster's nodes; the client learns the rest, and the slot map, from
    them. Timeouts in the URL win over ``timeout``. Raises StoreError for a malformed URL or an
    unreachable server. ``on_connect(connection)`` runs on every new connection to a single
    server, after redis-py's own handshake and before the command that needed it.
    """
    where = url.rsplit("@", 1)[-1]
    try:
        if url.partition("://")[0] not in CLUSTER_SCHEMES:
            # Timeouts in the URL win (redis-py's query string overrides these). One retry, at
            # once, only for a dropped connection: redis-py's default (10 retries with backoff)
            # held every request for seconds while Redis was paused (issue 14).
            hook = None if on_connect is None else _after_handshake(on_connect)
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, redis_connect_func=hook,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
        else:
            client = _cluster(url, timeout)
        client.ping()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as err:
        raise StoreError(f"cannot reach Redis at {where}: {str(err)[:200]}") from None
    return client


def _new_epoch() -> str:
    """Return a new dataset epoch: the time it began and a random tag (two in one second differ)."""
    return f"{int(time.time())} {secrets.token_hex(4)}"


def _after_handshake(on_connect: Callable[[Any], None]) -> Callable[[Any], None]:
    """Return a redis-py ``redis_connect_func``: its own handshake, then ``on_connect``."""

    def connected(connection: Any) -> None:
        connection.on_connect()
        on_connect(connection)

    return connected


def _cluster(url: str, timeout: float) -> Any:
    """Return a RedisCluster client for a ``redis+cluster://`` URL (see :func:`connect`)."""
    from redis.cluster import ClusterNode, RedisCluster

    parts = urllib.parse.urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise StoreError(f"store URL {url.rsplit('@', 1)[-1]!r}: each cluster node is HOST:PORT, "
                             f"not {node.rsplit('@', 1)[-1]!r}")
        nodes.append(ClusterNode(urllib.parse.unquote(host.strip("[]")), int(port)))
    if not nodes:
        raise StoreError(f"store URL {url!r} names no cluster node (redis+cluster://HOST:PORT[,HOST:PORT...])")
    if parts.path not in ("", "/", "/0"):
        raise StoreError(f"store URL {url.rsplit('@', 1)[-1]!r}: a Redis Cluster has only database 0")
    query = urllib.parse.parse_qs(parts.query)
    unknown = sorted(set(query) - set(_CLUSTER_QUERY))
    if unknown:
        raise StoreError(f"store URL {url.rsplit('@', 1)[-1]!r}: unknown option {unknown[0]!r} "
                         f"(a cluster URL takes {', '.join(_CLUSTER_QUERY)})")
    options: dict[str, Any] = {name: float(query.get(name, [timeout])[-1]) for name in _CLUSTER_QUERY}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=urllib.parse.unquote(user) or None,
                       password=urllib.parse.unquote(password) or None)
    # One retry after a connection fault, a timeout or a moved slot, re-reading the slot map
    # first (a failover): a call waits at most about twice the timeout, never redis-py's default.
    return RedisCluster(startup_nodes=nodes, ssl=parts.scheme.startswith("rediss"),
                        retry=Retry(NoBackoff(), 1), **options)


@translate_faults(redis.RedisError, redis.exceptions.RedisClusterException)
class RedisStore:
    """Implements :class:`~policy_sso.sessions.store.Store` on a Redis server or a Redis Cluster."""

    loses_records = True  # a restart without persistence, a flush, a failover to an empty replica

    def __init__(self, url: str, lifetime: SessionLifetime, options: StoreOptions | None = None) -> None:
        options = options or StoreOptions()
        self.url = url
        self.lifetime = lifetime
        self.max_sessions_per_user = options.max_sessions_per_user
        self._epoch: str | None = None  # the Redis dataset's epoch key, as last seen (see intact_since)
        self._run_id: str | None = None  # the Redis server's run_id, as last seen
        self._policy_checked = False  # whether maxmemory-policy was looked at (once a process)
        self._intact_since = 0
        self._replaced_since = 0  # since when the dataset holds every end written (see _saw)
        self._ends = 0  # the highest ENDS_KEY count this store has seen
        # called when the dataset is found replaced: what it held of the users' credentials (a
        # password set at run time) may be gone, so the provider re-reads users.yaml
        self.on_replaced: list[Callable[[], None]] = []
        self._epoch_checked = float("-inf")  # monotonic time of the last check
        self.redis = connect(url, options.timeout, on_connect=self._check_epoch_on)
        self.timeout = options.timeout
        self._pipelines_run_scripts = url.partition("://")[0] not in CLUSTER_SCHEMES  # cluster ones do not
        self._put_session = self.redis.register_script(_PUT_SESSION)
        self._index_add = self.redis.register_script(_INDEX_ADD)
        self._index_move = self.redis.register_script(_INDEX_MOVE)
        self._get_and_touch = self.redis.register_script(_GET_AND_TOUCH)
        self._claim = self.redis.register_script(_CLAIM)
        self._not_before = self.redis.register_script(_NOT_BEFORE)
        self._replace_credential = self.redis.register_script(_REPLACE_CREDENTIAL)
        self._use_jti = self.redis.register_script(_USE_JTI)
        self._hit = self.redis.register_script(_HIT)
        self._compare_and_set = self.redis.register_script(_COMPARE_AND_SET)
        self._put_refresh = self.redis.register_script(_PUT_REFRESH)
        self._rotate = self.redis.register_script(_ROTATE)
        self._revoke_family = self.redis.register_script(_REVOKE_FAMILY)
        self._decoded = codec.DecodedSessions()
        # session id -> its stored last-seen, as this store last saw it (this process's memory only)
        self._seen: dict[str, int] = {}

    # the dataset's epoch -------------------------------------------------------------------
    def intact_since(self) -> int:
        """Return since when this Redis holds every record this store wrote (``Store.intact_since``).

        Two signs of a loss of records (the single-use and revocation records go with them):
        the epoch key (``psso:epoch``) that the first instance to find it missing writes (gone:
        a restart without persistence, a flush, a failover to an empty replica), and the
        server's ``run_id`` (changed: a restart, even one that reloads a snapshot or an AOF
        that may miss the last writes, or a failover to another server). Both are read on
        every new connection to a single server, before its first command (a restart drops
        every connection); the epoch also at most once a second (a flush; a cluster, on the
        node holding the key).

        Before any loss this is when the dataset began (the epoch's time, never later than
        this machine's clock); once a loss is seen, the second after it was seen: everything
        issued before is refused until it expires.
        """
        self._look_when_due()
        return self._intact_since

    def _look_when_due(self) -> None:
        """Look at the epoch and the count of ends if the last look is EPOCH_CHECK_INTERVAL old."""
        if time.monotonic() - self._epoch_checked >= EPOCH_CHECK_INTERVAL:
            self._check_epoch()

    def _look_if_changed(self, epoch: Any) -> None:
        """Look at once when the epoch read in a call's own round trip is not the one last seen."""
        if epoch is None or isinstance(epoch, Exception) or _text(epoch) != self._epoch:
            self._check_epoch()

    def _check_epoch(self) -> None:
        """Read the dataset's epoch (starting it) and its count of ends, now."""
        self._epoch_checked = time.monotonic()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(EPOCH_KEY, _new_epoch(), nx=True)
            pipe.get(EPOCH_KEY)
            pipe.get(ENDS_KEY)
            _, epoch, ends = pipe.execute()
        if self._went_back(ends):
            epoch = _new_epoch()
            self.redis.set(EPOCH_KEY, epoch)  # so every instance takes the dataset as replaced
        self._saw(epoch=epoch, ends=ends)

    def _went_back(self, ends: Any) -> bool:
        """Return whether the dataset counts fewer ends than this store has seen (writes were lost)."""
        return self._epoch is not None and int(ends or 0) < self._ends

    def _check_epoch_on(self, connection: Any) -> None:
        """Read the server's run_id and the dataset's epoch (starting it) on a new connection."""
        connection.send_command("INFO", "server")
        run_id = re.search(r"^run_id:(\w+)", _text(connection.read_response()), re.M)
        if not self._policy_checked:
            self._policy_checked = True
            connection.send_command("INFO", "memory")
            policy = re.search(r"^maxmemory_policy:(\S+)", _text(connection.read_response()), re.M)
            if policy and policy.group(1) != "noeviction":
                log.warning("Redis evicts keys under memory pressure (maxmemory-policy %s): a single-use or "
                            "revocation record it evicts is forgotten; set maxmemory-policy noeviction",
                            policy.group(1))
        connection.send_command("SET", EPOCH_KEY, _new_epoch(), "NX")
        connection.read_response()
        connection.send_command("GET", EPOCH_KEY)
        epoch = connection.read_response()
        connection.send_command("GET", ENDS_KEY)
        ends = connection.read_response()
        if self._went_back(ends):
            epoch = _new_epoch()
            connection.send_command("SET", EPOCH_KEY, epoch)
            connection.read_response()
        self._saw(epoch=epoch, run_id=run_id.group(1) if run_id else None, ends=ends)
        self._epoch_checked = time.monotonic()

    def _saw(self, epoch: Any, run_id: str | None = None, ends: Any = None) -> None:
        """Take in the dataset's epoch, the server's run_id and the count of ends, as just read.

        A restart (a new run_id) may have lost the last writes: what is single-use or revocable
        and short-lived (codes, request_uris, DPoP proofs, access tokens) is refused when issued
        before (``intact_since``). A replaced dataset (a new epoch: a flush, an empty restart, a
        failover to an empty replica, or a count of ends gone back) may also have brought back
        what had ended: sessions last authenticated, and refresh tokens granted, before it are
        refused too (``_replaced_since``).
        """
        text = _text(epoch) if epoch is not None else _new_epoch()  # gone again between SET and GET
        now = int(time.time())
        count = int(ends or 0)
        if self._epoch is None:  # the first look: the dataset began then (a clock ahead is not believed)
            try:
                began = int(text.split()[0])
            except (ValueError, IndexError):  # not an epoch this store wrote: take it as begun now
                began = now
            self._intact_since = min(began, now)
        elif text != self._epoch or (run_id is not None and self._run_id not in (None, run_id)):
            self._intact_since = max(self._intact_since, now + 1)
            if text != self._epoch:
                self._replaced_since = max(self._replaced_since, now + 1)
            log.warning("the Redis store may have lost records (%s): codes, request_uris, DPoP proofs and "
                        "access tokens issued before %d are refused until they expire%s",
                        "its data was replaced" if text != self._epoch else "the server restarted",
                        self._intact_since,
                        ", and so are sessions and refresh tokens" if text != self._epoch else "")
        # a replaced dataset starts its count again (below ours); else the count only grows
        replaced = self._epoch is not None and text != self._epoch
        self._ends = count if text != self._epoch else max(self._ends, count)
        self._epoch = text
        if run_id is not None:
            self._run_id = run_id
        for hook in self.on_replaced if replaced else ():
            try:
                hook()
            except Exception:  # a hook's failure must not turn the store call that found it into a fault
                log.exception("a hook on the Redis dataset's replacement failed")

    def _ended(self) -> None:
        """Count a write that ended or withdrew something (ENDS_KEY), keeping the count seen."""
        self._ends = max(self._ends, int(self.redis.incr(ENDS_KEY)))

    def _current(self, session: Session) -> Session | None:
        """Return the session unless it was last authenticated before the dataset was replaced (a
        logout the replaced dataset lost would be undone); the epoch is looked at when due."""
        self._look_when_due()
        return session if session.auth_time >= self._replaced_since else None

    def _granted_since_replaced(self, data: dict[str, Any]) -> bool:
        """Return whether a refresh family was granted after the dataset was last replaced."""
        self._look_when_due()
        granted = data.get("granted_at", data.get("auth_time"))
        if not isinstance(granted, int) or isinstance(granted, bool):
            granted = 0  # no time to judge by: as old as can be
        return granted >= self._replaced_since

    @staticmethod
    def _s(session_id: str) -> str:
        return _session_key(session_id)

    @staticmethod
    def _subject(subject: str) -> str:
        """Return the key of the subject's session index (a sorted set)."""
        return f"{PREFIX}uz:{subject}"

    # sessions --------------------------------------------------------------------------
    def _hard(self, session: Session) -> int:
        return min(session.auth_time + self.lifetime.sliding, session.created_at + self.lifetime.absolute) + 1

    def _session_ttl(self, session: Session, now: int) -> int:
        return max(1, min(self._hard(session), session.last_seen + self.lifetime.inactivity + 1) - now)

    def _value(self, session: Session) -> str:
        """Return the stored form of a session: last-seen and hard expiry digits, then its JSON."""
        return f"{session.last_seen:011d}{self._hard(session):011d}{codec.encode(session)}"

    def _decode(self, session_id: str, value: bytes) -> Session:
        """Return the session a stored value holds (its JSON after the header), decoded once per value."""
        return self._decoded.decode(session_id, value[_HEADER:], int(value[:11]))

    def _live(self, value: bytes, now: int) -> bool:
        return now < int(value[11:_HEADER]) and now - int(value[:11]) <= self.lifetime.inactivity

    def _put(self, session: Session, now: int, client: Any = None) -> None:
        """Write a session and its end plan (one slot, one script call; ``client``: a pipeline)."""
        sliding = SessionEnd(SESSION_EXPIRED, session.auth_time + self.lifetime.sliding + 1,
                             self.lifetime.sliding)
        absolute = SessionEnd(ABSOLUTE_LIFETIME_EXCEEDED, session.created_at + self.lifetime.absolute + 1,
                              self.lifetime.absolute)
        hard = sliding if sliding.at <= absolute.at else absolute
        ttl = self._session_ttl(session, now)
        self._put_session(keys=[self._s(session.id), _end_key(session.id)],
                          args=[self._value(session), ttl,
                                f"{session.last_seen:011d}{codec.encode_end(hard)}", ttl + END_RECORD_TTL],
                          client=client)

    def _take(self, keys: list[SessionKey]) -> list[Session]:
        """Delete these sessions (GETDEL, one pipeline over their slots); return those that were there."""
        if not keys:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.getdel(self._s(key))
            values = pipe.execute()
        return [self._decode(key, value) for key, value in zip(keys, values, strict=True)
                if value is not None]

    def create_session(self, session: Session) -> list[Session]:
        # the session first, then its index entry (another slot): a reader of the index drops ids
        # whose session is gone, which must never be one still on its way; a fault in between
        # leaves the session unindexed until it expires (the module docstring)
        self._put(session, session.last_seen)
        popped = self._index_add(keys=[self._subject(session.subject)],
                                 args=[session_key(session.id), self.lifetime.absolute + 86400,
                                       self.max_sessions_per_user])
        return self._take(_indexed(popped[::2]))

    def _read(self, session_id: str, now: int) -> tuple[Session, bytes] | None:
        """Return the live session and its stored value, in one GET."""
        value = self.redis.get(self._s(session_id))
        if value is None or not self._live(value, now):
            return None
        session = self._current(self._decode(session_id, value))
        return (session, value) if session is not None else None

    def get_session(self, session_id: str, now: int) -> Session | None:
        found = self._read(session_id, now)
        return found[0] if found else None

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        """Return the live session as read, touching it when due, in one round trip.

        A session's stored last-seen only moves forward, so once this store has seen it at
        ``seen``, no touch can be due before ``seen + touch_interval``: until then the call is a
        plain GET (the liveness check is the script's, in Python). Otherwise, or when this
        store has not seen the session lately, it is the script call that reads and touches.
        """
        key = f"{_SESSION}{session_key(session_id)}}}"
        interval = self.lifetime.touch_interval
        seen = self._seen.get(session_id)
        if seen is not None and now - seen < interval:
            value = self.redis.get(key)
            if value is None:
                return None
            last = int(value[:11])
            if now >= int(value[11:_HEADER]) or now - last > self.lifetime.inactivity:  # _live, inlined
                return None
            self._seen[session_id] = last
            return self._current(self._decode(session_id, value))
        plan = key + ":end"
        try:
            # EVALSHA by hand: the Script wrapper's per-call bookkeeping costs ~5% of a round trip
            value = self.redis.execute_command("EVALSHA", self._get_and_touch.sha, 2, key, plan, now,
                                               interval, self.lifetime.inactivity, END_RECORD_TTL)
        except redis.exceptions.NoScriptError:  # first call, or the server's script cache was flushed
            value = self._get_and_touch(keys=[key, plan], args=[now, interval, self.lifetime.inactivity,
                                                                END_RECORD_TTL])
        if not value:
            return None
        last = int(value[:11])
        if len(self._seen) >= _DECODED_CACHE:
            self._seen.clear()
        self._seen[session_id] = now if now - last >= interval else last  # what the script left stored
        return self._current(self._decode(session_id, value))

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
            else:  # a re-authentication: claim the old id (and its plan), then write the new one
                result = self._claim(keys=[self._s(session_id), _end_key(session_id)],
                                     args=[stored[_HEADER:], now, self.lifetime.inactivity])
                if result == 1:
                    self._put(updated, now)
                    self._index_move(keys=[self._subject(session.subject)],
                                     args=[session_key(session_id), session_key(updated.id)])
            if result == 1:
                return updated
            if result == 0:
                return None

    def reauthenticate(self, session_id: str, event: AuthEvent, new_id: str, now: int,
                       device: Device | None = None) -> Session | None:
        moved = self._update(session_id, now, lambda s: s.with_event(event, new_id, device))
        if moved is not None and moved.id != session_id:
            self._ended()  # the old id is spent
        return moved

    def join_client(self, session_id: str, join: ClientJoin, now: int) -> Session | None:
        return self._update(session_id, now, lambda s: s.with_client(join))

    def grant_consent(self, session_id: str, client_id: str, scopes: frozenset[str],
                      now: int) -> Session | None:
        return self._update(session_id, now, lambda s: s.with_consent(client_id, scopes, now))

    def withdraw_consent(self, session_id: str, client_id: str, now: int) -> Session | None:
        session = self._update(session_id, now, lambda s: s.without_consent(client_id))
        if session is not None:
            self._ended()
        return session

    def end_session(self, session_id: str, reason: str = LOGGED_OUT,
                    now: int | None = None) -> Session | None:
        key = session_key(session_id)
        value = self.redis.getdel(self._s(key))
        if value is None:
            return None
        session = self._decode(session_id, value)
        self.redis.zrem(self._subject(session.subject), key)
        self.record_session_end(key, SessionEnd(reason, _now(now)))
        self._ended()
        return session

    def _fold_legacy_index(self, subject: str) -> None:
        """Delete a subject's legacy index (a plain set, another slot): it holds ids in the clear,
        whose sessions (an earlier layout) are not found any more."""
        self.redis.delete(f"{PREFIX}u:{subject}")

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        self._fold_legacy_index(subject)
        index, ended = self._subject(subject), []
        while True:  # in batches: ending thousands never holds Redis for long
            # the sessions go before their index entries: a fault in between leaves ids that
            # point nowhere (dropped by the next read), never a live session no index holds
            batch = self.redis.zrange(index, 0, _END_BATCH_SIZE - 1)
            taken = self._take(_indexed(batch))
            if batch:
                self.redis.zrem(index, *batch)
            with self.redis.pipeline(transaction=False) as pipe:
                for session in taken:
                    pipe.set(_end_key(session.id), codec.encode_end(SessionEnd(reason, _now(now))),
                             ex=END_RECORD_TTL)
                pipe.execute()
            ended += taken
            if len(batch) < _END_BATCH_SIZE:
                if ended:
                    self._ended()
                return ended

    # why sessions ended ------------------------------------------------------------------
    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        # the TTL only cleans up: session_end checks kept_until against the caller's now
        self.redis.set(_end_key(session_id), codec.encode_end(end), ex=END_RECORD_TTL)

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        key = session_key(session_id)
        value = self.redis.get(self._s(key))
        if value is not None:
            if self._live(value, now):
                return None
            # expired by the caller's clock before Redis's TTL ran out: keep only the reason
            session = self._decode(session_id, value)
            end = self.lifetime.end_of(session)
            self.redis.delete(self._s(key))
            self.redis.zrem(self._subject(session.subject), key)
            self.record_session_end(key, end)
        else:
            stored = self.redis.get(_end_key(key))
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
        """Return the subject's live sessions, oldest first; drops index ids whose session is gone."""
        self._fold_legacy_index(subject)
        index = self._subject(subject)
        members = self.redis.zrange(index, 0, -1)  # at most the bound
        keys = _indexed(members)
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(self._s(key))
            values = pipe.execute() if keys else []
        # dropped: keys whose session is gone, and ids in the clear (an older index's)
        gone = [member for member in members if stored_session_key(member.decode()) is None]
        gone += [key for key, value in zip(keys, values, strict=True) if value is None]
        if gone:
            self.redis.zrem(index, *gone)
        return [session for key, value in zip(keys, values, strict=True)
                if value is not None and self._live(value, now)
                and (session := self._current(self._decode(key, value))) is not None]

    # refresh tokens --------------------------------------------------------------------
    # (Before Redis Cluster support a token was a hash ``psso:r:<digest>`` and a family a set of
    # their keys, in other slots: tokens issued then are not read any more, docs/operations.md.)
    @staticmethod
    def _family(family_id: str) -> list[str]:
        """Return a refresh family's keys: the hash of its tokens, its spent set and its access
        tokens (one slot)."""
        tag = f"{PREFIX}{{rf:{family_id}}}"
        return [tag, f"{tag}:spent", f"{tag}:at"]

    @staticmethod
    def _token(digest: str) -> str:
        """Return the key naming a refresh token's family (a string, in the token's own slot)."""
        return f"{PREFIX}rt:{digest}"

    def _family_of(self, digest: str) -> str | None:
        family = self.redis.get(self._token(digest))
        return family.decode() if family is not None else None

    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any], expires_at: int,
                    now: int | None = None, *, access: AccessToken | None = None) -> None:
        ttl = _ttl(expires_at, now)
        # the pointer first: without its token in the family it leads nowhere (get_refresh: None)
        self.redis.set(self._token(token_key), family_id, ex=ttl)
        args: list[Any] = [token_key, f"0{expires_at:011d}{json.dumps(data)}", ttl]
        if access is not None:
            args += [access[0], access[1], _ttl(access[1], now)]
        self._put_refresh(keys=self._family(family_id), args=args)

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int, *,
                       access: AccessToken | None = None) -> RefreshRotation:
        family_id = self._family_of(old_key)
        if family_id is None:
            return RefreshRotation("unknown")
        # the successor's pointer before the rotation: a fault in between leaves the old token
        # unspent (the client may retry), never a live successor that no pointer finds
        self.redis.set(self._token(new_key), family_id, ex=_ttl(expires_at, now))
        args: list[Any] = [old_key, new_key, expires_at, now]
        if access is not None:
            args += list(access)
        result = self._rotate(keys=self._family(family_id), args=args)
        status = result[0].decode()
        if status == "unknown":
            return RefreshRotation("unknown")
        if status == "reused":
            self.revoke_family(family_id, now)
            return RefreshRotation("reused", family_id, json.loads(result[1]) if len(result) > 1 else None)
        data = json.loads(result[1])
        if not self._granted_since_replaced(data):  # a revocation the replaced dataset lost is kept
            self.revoke_family(family_id, now)
            return RefreshRotation("unknown")
        self._ended()  # the old token is spent
        return RefreshRotation("ok", family_id, data)

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        family_id = self._family_of(token_key)
        if family_id is None:
            return None
        value = self.redis.hget(self._family(family_id)[0], token_key)
        if value is None or value[:1] == b"1" or now >= int(value[1:12]):
            return None
        data = json.loads(value[12:])
        return (family_id, data) if self._granted_since_replaced(data) else None

    def revoke_family(self, family_id: str, now: int | None = None) -> None:
        # The family's keys share a slot, its access tokens' revocation records do not: they are
        # written first, then one script deletes the family (every refresh token at once, so a
        # racing rotation either ran before, and its successor goes too, or finds its token gone)
        # and returns the access tokens a rotation recorded in between, which are written last.
        # A fault before the delete leaves the family to be revoked again, never a deleted family
        # whose access tokens were not revoked; a family without live access tokens is one call.
        at = _now(now)
        keys = self._family(family_id)
        first = self._pairs(self._revoke_family(keys=keys, args=[at, "first"]))
        self._ended()
        if not first:
            return
        self._record_revoked(first, at)
        last = self._pairs(self._revoke_family(keys=keys, args=[at, "last"]))
        self._record_revoked({jti: exp for jti, exp in last.items() if jti not in first}, at)

    @staticmethod
    def _pairs(flat: list[Any]) -> dict[str, int]:
        """Return ``{jti: expiry}`` from a script's flat ``[jti, score, ...]`` reply."""
        return {_text(jti): int(float(score)) for jti, score in zip(flat[::2], flat[1::2], strict=True)}

    def _record_revoked(self, tokens: dict[str, int], now: int) -> None:
        """Record access tokens as revoked until their expiry (one pipeline over their slots)."""
        if not tokens:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for jti, expires_at in tokens.items():
                pipe.set(self._jti(REVOKED_ACCESS_TOKENS, jti), expires_at, ex=_ttl(expires_at, now))
            pipe.execute()

    # identifiers and counters ------------------------------------------------------------
    @staticmethod
    def _jti(namespace: str, jti: str) -> str:
        # the namespace's length goes first: namespaces hold colons (hint issuers are URLs),
        # and ("hint:https://a", "8443:j") must not share a key with ("hint:https://a:8443", "j")
        return f"{PREFIX}j:{len(namespace)}:{namespace}:{jti}"

    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        if self._pipelines_run_scripts:
            return self.use_jtis([(namespace, jti, expires_at)], now)[0]
        return self._spend(namespace, jti, expires_at, now)

    def _spend(self, namespace: str, jti: str, expires_at: int, now: int | None) -> bool:
        return self._use_jti(keys=[self._jti(namespace, jti)],
                             args=[expires_at, _ttl(expires_at, now), "" if now is None else now]) == 1

    def use_jtis(self, entries: Sequence[tuple[str, str, int]], now: int | None = None) -> tuple[bool, ...]:
        if not self._pipelines_run_scripts:  # a cluster: the epoch is looked at once a second
            return tuple(self._spend(*entry, now) for entry in entries)
        # one round trip: EVALSHA queued directly (a Script called on a pipeline would first ask
        # SCRIPT EXISTS, a round trip of its own); a server that lost its scripts (a restart) answers
        # NOSCRIPT to those it did not run, which then go one by one, loading the script. The epoch
        # comes back in the same trip: a flush since the last look would let a spent record be
        # written again, so it is looked at before the caller asks intact_since.
        with self.redis.pipeline(transaction=False) as pipe:
            for namespace, jti, expires_at in entries:
                pipe.evalsha(self._use_jti.sha, 1, self._jti(namespace, jti),
                             expires_at, _ttl(expires_at, now), "" if now is None else now)
            pipe.get(EPOCH_KEY)
            *answers, epoch = pipe.execute(raise_on_error=False)
        self._look_if_changed(epoch)
        return tuple(self._spend(*entry, now) if isinstance(answer, redis.exceptions.NoScriptError)
                     else _raised(answer) == 1 for entry, answer in zip(entries, answers, strict=True))

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        recorded = self.redis.get(self._jti(namespace, jti))
        return recorded is not None and now < int(recorded)

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        start = now - now % window
        count = self._hit(keys=[f"{PREFIX}n:{key}:{start}"], args=[amount, start + window - now + 1])
        return int(count), start + window

    # per-subject token cut-off ------------------------------------------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        self._not_before(keys=[f"{PREFIX}nb:{subject}"], args=[at, _ttl(expires_at, at)])
        self._ended()

    def not_before(self, subject: str, now: int) -> int:
        recorded = self.redis.get(f"{PREFIX}nb:{subject}")
        return int(recorded) if recorded is not None else 0

    # credentials set at run time: one hash per subject, a field per credential ---------------
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        self.redis.hset(f"{PREFIX}cred:{subject}", credential_id, _record_text(record))
        self._ended()  # a password replaced, a factor added: what came before must not come back

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        if not self._pipelines_run_scripts:  # a cluster: the epoch is looked at once a second
            held = self.redis.hgetall(f"{PREFIX}cred:{subject}")
        else:  # a flush since the last look would hide a password set at run time: looked at now
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{PREFIX}cred:{subject}")
                pipe.get(EPOCH_KEY)
                held, epoch = pipe.execute()
            self._look_if_changed(epoch)
        return {_text(cid): json.loads(data) for cid, data in held.items()}

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        done = self._replace_credential(keys=[f"{PREFIX}cred:{subject}"],
                                        args=[credential_id, _record_text(old), _record_text(new)])
        if done:
            self._ended()
        return bool(done)

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        deleted = bool(self.redis.hdel(f"{PREFIX}cred:{subject}", credential_id))
        if deleted:
            self._ended()
        return deleted

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
