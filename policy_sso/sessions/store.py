"""The store interface (SPEC §3): one Protocol, three backends chosen by URL.

Besides sessions, the store keeps everything a second server instance must
see the same way: refresh-token families, used identifiers (redeemed
authorization codes, login_hint_token ``jti``s, revoked access tokens) and
rate-limit counters. Each record has an expiry that the store itself enforces.
An authorization code carries its own sealed grant
(:mod:`policy_sso.oidc.codes`); the store records that it was redeemed, which
is what makes it single-use across instances.

Token values never reach the store in the clear: callers pass a digest
(``token_key``) as the key. Nor do session ids: every store keys a session,
its subject's index and its end record by :func:`session_key`.

Expiry is exact against the ``now`` each call passes (tests run a fake
clock); where a backend also keeps TTLs (Redis) they are relative to that
``now`` and only clean up. Writes that take an optional ``now`` fall back to
the wall clock for their TTL.
"""

from __future__ import annotations

import functools
import hashlib
import types
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from policy_sso.sessions.model import (
    LOGGED_OUT,
    AuthEvent,
    ClientJoin,
    Device,
    Session,
    SessionEnd,
    SessionLifetime,
)

DEFAULT_TIMEOUT = 1.0  # seconds a store call may wait (SPEC §7: a fault answered within a bounded time)
DEFAULT_MAX_SESSIONS_PER_USER = 100


@dataclass(frozen=True)
class StoreOptions:
    """How a store is run (``tenant.yaml``: ``store_timeout``, ``session.max_per_user``).

    ``timeout``: how long one store call may wait, in seconds: Redis's socket
    connect and read timeouts, SQLite's busy timeout. A call that runs out
    raises :class:`~policy_sso.errors.StoreUnavailable`. ``max_sessions_per_user``:
    creating a session beyond this many for one subject ends the oldest.
    """

    timeout: float = DEFAULT_TIMEOUT
    max_sessions_per_user: int = DEFAULT_MAX_SESSIONS_PER_USER


_Cls = TypeVar("_Cls", bound=type)


def translate_faults(*faults: type[BaseException]) -> Callable[[_Cls], _Cls]:
    """Return a class decorator: in every public method, ``faults`` become StoreUnavailable.

    One place turns a backend's own errors (a Redis connection refused or timed
    out, SQLite's "database is locked") into the one exception the HTTP layer
    answers with 503 ``temporarily_unavailable``; callers never see a driver's
    exception. The original stays chained as ``__cause__``.
    """
    from policy_sso.errors import StoreUnavailable

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except faults as err:
                raise StoreUnavailable(f"{type(err).__name__}: {str(err)[:200]}") from err
        return guarded

    def decorate(cls: _Cls) -> _Cls:
        for name, value in list(vars(cls).items()):
            if not name.startswith("_") and isinstance(value, types.FunctionType):
                setattr(cls, name, wrap(value))
        return cls

    return decorate


def token_key(token: str) -> str:
    """Return the store key for a bearer secret (SHA-256 hex): tokens are never stored as-is."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionKey(str):
    """A session's key in the store: ``token_key`` of its id. The store never keeps the id itself.

    A session a store returns without having been given its id (a subject's
    sessions, the ones it pushed out or ended together) carries its key as its
    ``id``, and every store method taking a session id takes that key back for
    the same session. It is told apart by its type, not its spelling: a cookie
    or a form value is a plain ``str`` and is always digested, so a digest read
    from a database file or a backup never stands in for an id.
    """

    __slots__ = ()

    def __new__(cls, digest: str) -> SessionKey:
        # never an id in the clear (43 characters): a row an older store keyed by the id stays unreachable
        if len(digest) != _KEY_CHARS:
            raise ValueError("a session key is a SHA-256 digest in hex")
        return super().__new__(cls, digest)


def session_key(session_id: str) -> SessionKey:
    """Return the key a session is stored under: the SHA-256 of its id (a SessionKey as it is)."""
    if isinstance(session_id, SessionKey):
        return session_id
    return str.__new__(SessionKey, token_key(session_id))  # a digest: SessionKey's check holds


def stored_session_key(stored: str) -> SessionKey | None:
    """Return the key a store read back as a SessionKey; None for a session id stored in the clear.

    Stores written before sessions were keyed by digest hold ids as their keys
    (43 characters, never 64 hex digits): such a session is not found any more
    by its id, is never handed out, and goes when it expires.
    """
    return SessionKey(stored) if len(stored) == _KEY_CHARS and _HEX.issuperset(stored) else None


_KEY_CHARS = 64  # SHA-256, hex
_HEX = frozenset("0123456789abcdef")


# The use_jti namespace of revoked access tokens (RFC 7009 §2, RFC 9068 §4): every access token's
# check reads it, and a revoked refresh family records its access tokens' jtis here.
REVOKED_ACCESS_TOKENS = "revoked-at"

AccessToken = tuple[str, int]
"""An access token issued with a refresh token: its ``jti`` and its expiry (epoch s)."""


@dataclass(frozen=True)
class RefreshRotation:
    """The result of rotating a refresh token (RFC 9700 §4.14.2).

    ``ok``: the old token is now spent and the new one is live, ``data`` is the
    family's data. ``reused``: a spent token was presented; the whole family has
    been revoked. ``unknown``: never issued, expired or revoked.
    """

    status: Literal["ok", "reused", "unknown"]
    family_id: str | None = None
    data: dict[str, Any] | None = None


@runtime_checkable
class Store(Protocol):
    """What every backend implements. All times are integer epoch seconds.

    A session is stored under :func:`session_key` of its id, never the id. A
    session looked up by its id comes back with that ``id``; one the store
    hands out unasked (``sessions_of``, ``end_sessions_of``, those
    ``create_session`` pushed out) has its :class:`SessionKey` as its ``id``,
    which every method taking a session id accepts for it. Compare sessions by
    ``session_key(s.id)``.
    """

    lifetime: SessionLifetime
    # whether records it acknowledged may be lost (Redis: a restart without persistence, a flush): what
    # must outlive such a loss (a password set at run time) is then also written elsewhere
    loses_records: bool

    # sessions ---------------------------------------------------------------
    def create_session(self, session: Session) -> list[Session]:
        """Store a new session, indexed by its subject; return the sessions it pushed out.

        A subject keeps at most ``max_sessions_per_user`` sessions: beyond that
        the oldest (by creation) end, and are returned so the caller can send
        their back-channel logout. Costs O(1) amortised whatever the subject holds.
        """

    def get_session(self, session_id: str, now: int) -> Session | None:
        """Return the live session or None (unknown, ended or expired per ``lifetime``)."""

    def touch_session(self, session_id: str, now: int) -> None:
        """Set last-seen to ``now`` unless it moved less than ``lifetime.touch_interval``."""

    def get_and_touch(self, session_id: str, now: int) -> Session | None:
        """Return the live session as read, and touch it, in one operation (one round trip)."""

    def reauthenticate(self, session_id: str, event: AuthEvent, new_id: str, now: int,
                       device: Device | None = None) -> Session | None:
        """Atomically move a live session to ``new_id`` with ``event`` added; the old id dies.

        ``device``: where the authentication came from (None keeps the recorded one).
        """

    def join_client(self, session_id: str, join: ClientJoin, now: int) -> Session | None:
        """Record that the session signed into a client (kept if already joined); return it."""

    def grant_consent(self, session_id: str, client_id: str, scopes: frozenset[str],
                      now: int) -> Session | None:
        """Add ``scopes`` to what the user granted ``client_id`` in this session; return it."""

    def withdraw_consent(self, session_id: str, client_id: str, now: int) -> Session | None:
        """Remove what the user granted ``client_id`` in this session (the account page); return it."""

    def end_session(self, session_id: str, reason: str = LOGGED_OUT,
                    now: int | None = None) -> Session | None:
        """Delete the session, recording why (``reason`` at ``now``); return it as it was or None."""

    def end_sessions_of(self, subject: str, reason: str = LOGGED_OUT,
                        now: int | None = None) -> list[Session]:
        """Delete every session of ``subject``, recording why each ended; return them."""

    def sessions_of(self, subject: str, now: int) -> list[Session]:
        """Return the live sessions of ``subject``."""

    # why a session ended (SPEC §2: the app is told exactly why) ------------------
    def record_session_end(self, session_id: str, end: SessionEnd) -> None:
        """Keep why a session ended, keyed by ``session_key(session_id)``, until ``end.kept_until()``.

        Only the reason, the time and the limit are kept: nothing else of the session.
        """

    def session_end(self, session_id: str, now: int) -> SessionEnd | None:
        """Return why the session ended while the record lasts; None when live, unknown or forgotten.

        Besides explicit ends (logout, admin, password change), a session that
        expired says which lifetime limit it reached and when
        (:meth:`SessionLifetime.end_of`).
        """

    # refresh tokens (rotation with reuse detection) ---------------------------
    # A family also records the access tokens issued with its refresh tokens (``access``: the
    # token's ``jti`` and expiry), so that revoking the family revokes them too (RFC 7009 §2.1,
    # RFC 9700 §4.14.2): each goes into the ``REVOKED_ACCESS_TOKENS`` namespace of ``use_jti``,
    # which every access token's check already reads. Recording costs no call of its own.
    def put_refresh(self, token_key: str, family_id: str, data: dict[str, Any],
                    expires_at: int, now: int | None = None, *, access: AccessToken | None = None) -> None:
        """Store a refresh token, the first of its family, with the access token issued with it."""

    def rotate_refresh(self, old_key: str, new_key: str, now: int, expires_at: int, *,
                       access: AccessToken | None = None) -> RefreshRotation:
        """Atomically spend ``old_key`` and make ``new_key`` live in the same family, recording
        ``access`` (the access token issued with ``new_key``) with the family.

        A spent ``old_key`` is reuse: the family is revoked as :meth:`revoke_family` does.
        """

    def get_refresh(self, token_key: str, now: int) -> tuple[str, dict[str, Any]] | None:
        """Return ``(family_id, data)`` for a live, unspent refresh token."""

    def revoke_family(self, family_id: str, now: int | None = None) -> None:
        """Revoke every token of a refresh family: its refresh tokens, and each access token
        recorded with it that is live at ``now``, which ``is_jti_used(REVOKED_ACCESS_TOKENS, jti)``
        then reports until that token's expiry."""

    # single-use and revoked identifiers --------------------------------------
    def use_jti(self, namespace: str, jti: str, expires_at: int, now: int | None = None) -> bool:
        """Record a ``jti`` as used until ``expires_at``; return False if it already was (replay).

        Atomic: of concurrent callers (threads, processes, instances) exactly one
        gets True. A record past its expiry by ``now`` may be used again.
        """

    def use_jtis(self, entries: Sequence[tuple[str, str, int]], now: int | None = None) -> tuple[bool, ...]:
        """Record several ``(namespace, jti, expires_at)``; return, for each, what :meth:`use_jti` would.

        One round trip to a networked store (one statement in PostgreSQL, one
        pipeline in Redis): a code and the DPoP proof that redeems it are
        spent together. Each is atomic as in ``use_jti``; an entry given twice
        is answered as already used the second time.
        """

    def is_jti_used(self, namespace: str, jti: str, now: int) -> bool:
        """Return whether ``jti`` is recorded in ``namespace`` (e.g. revoked access tokens)."""

    def intact_since(self) -> int:
        """Return the epoch second since which the store holds every record written to it.

        0 for a store that loses nothing it acknowledged (SQLite, PostgreSQL) and for the
        memory store, which is for tests and demos: its records end with its process.
        A Redis that lost its data answers when that was found: the single-use and
        revocation records of what was issued before are gone, so callers refuse a code,
        request_uri, DPoP proof or access token issued before this time. Call it after the
        store call that spent or looked up the record: a reconnection during that call is
        what finds the loss.
        """

    # rate-limit counters ------------------------------------------------------
    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        """Add ``amount`` hits in the fixed window holding ``now``; return (count, window reset time)."""

    # per-subject token cut-off (a password change) ----------------------------
    def set_not_before(self, subject: str, at: int, expires_at: int) -> None:
        """Record that ``subject``'s grants authenticated before ``at`` are revoked, until ``expires_at``.

        A later cut-off wins over an earlier one, whatever order they arrive in.
        """

    def not_before(self, subject: str, now: int) -> int:
        """Return ``subject``'s token cut-off (epoch s), or 0 when none is recorded."""

    # a user's credentials set at run time (issue 18) ---------------------------
    # Enrolled factors (a sealed TOTP secret, passkeys) and a password changed on /account live
    # here, not in users.yaml, so every instance sharing the store sees them at once. A record is
    # a JSON object; none expires. Keys: the subject, then the credential's id.
    def put_credential(self, subject: str, credential_id: str, record: dict[str, Any]) -> None:
        """Store (or replace) one credential of ``subject``."""

    def credentials_of(self, subject: str) -> dict[str, dict[str, Any]]:
        """Return every credential of ``subject``, by id."""

    def replace_credential(self, subject: str, credential_id: str, old: dict[str, Any],
                           new: dict[str, Any]) -> bool:
        """Atomically replace a credential that still equals ``old``; return whether it did.

        What a passkey's sign count needs: of two sign-ins racing with one
        counter value, one wins (WebAuthn §7.2 step 21).
        """

    def delete_credential(self, subject: str, credential_id: str) -> bool:
        """Delete one credential of ``subject``; return whether it existed."""

    # housekeeping -------------------------------------------------------------
    def ping(self) -> None:
        """Return when the store answers (within its timeout); raise StoreUnavailable otherwise."""

    def sweep(self, now: int) -> int:
        """Delete expired records; return how many (a no-op where the backend expires itself)."""

    def close(self) -> None:
        """Release connections and files."""


# the URL schemes open_store understands, and what to write instead of any other
STORE_SCHEMES = ("memory:", "sqlite:", "postgresql:", "postgres:", "redis:", "rediss:", "unix:",
                 "redis+cluster:", "rediss+cluster:")
STORE_URL_FORMS = ("memory://, sqlite:///PATH, redis://HOST:PORT/DB, "
                   "redis+cluster://HOST:PORT[,HOST:PORT...] or postgresql://USER@HOST:PORT/DB")


def store_url(text: str) -> str:
    """Return ``text`` when it is a store URL of a supported scheme; raise ValueError naming the forms.

    Checks the form only (``serve --store`` refuses a typo as a usage error
    before anything is opened); :func:`open_store` connects.
    """
    if not text.startswith(STORE_SCHEMES):
        raise ValueError(f"unsupported store URL {text!r}: use {STORE_URL_FORMS}")
    return text


def open_store(url: str, lifetime: SessionLifetime, options: StoreOptions | None = None) -> Store:
    """Return the store named by ``url``: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``,
    ``redis+cluster://host:port[,host:port...]`` or ``postgresql://user@host:port/db``.

    A timeout in the URL wins over ``options.timeout``: ``sqlite:///path?timeout=0.5``,
    ``redis://host:port/db?socket_timeout=0.5&socket_connect_timeout=0.5``.
    """
    options = options or StoreOptions()
    if url.startswith("memory:"):
        from policy_sso.sessions.memory import MemoryStore

        return MemoryStore(lifetime, options)
    if url.startswith("sqlite:"):
        from policy_sso.sessions.sqlite import SQLiteStore

        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        timeout = urllib.parse.parse_qs(query).get("timeout")
        if timeout:
            options = StoreOptions(_seconds(timeout[-1], url), options.max_sessions_per_user)
        return SQLiteStore(path, lifetime, options)
    if url.startswith(("postgresql:", "postgres:")):
        from policy_sso.sessions.postgres import PostgresStore

        return PostgresStore(url, lifetime, options)
    if url.startswith(("redis:", "rediss:", "unix:", "redis+cluster:", "rediss+cluster:")):
        # one class for a server and a cluster: each script's keys share one hash slot
        from policy_sso.sessions.redis import RedisStore

        return RedisStore(url, lifetime, options)
    from policy_sso.errors import StoreError

    raise StoreError(f"unsupported store URL {url!r}: use {STORE_URL_FORMS}")


def _seconds(text: str, url: str) -> float:
    """Return a positive timeout in seconds read from a store URL; raise StoreError otherwise."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 60:  # NaN fails this test too
        from policy_sso.errors import StoreError

        raise StoreError(f"the timeout in store URL {url.partition('?')[0]!r} must be seconds in (0, 60]")
    return value
