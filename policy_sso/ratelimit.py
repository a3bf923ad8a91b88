"""Rate limits (SPEC §4) and the guessing throttle (SPEC §7), counted in the store.

Counters live in the store (``Store.hit``, a fixed window), so every server
instance sharing a store shares the limits. A limit is keyed by what the
server can vouch for, never by raw request input (SPEC §7, "no
unauthenticated input sizes memory"): a session id once the store knows it, a
client id once it is registered; anything else is counted against the client
address (:func:`caller_parts`). Store keys are digests.

A limiter takes permits from the store in blocks (a lease): one store write
buys up to :func:`block_size` requests, which this process then spends from
memory until the block or the window runs out. The store's count is the
number of permits handed out, and each block is cut to what the limit leaves,
so the instances sharing a store together never allow more than the limit;
once the store has none left, the process refuses from memory until the
window resets.
In one process the limit is exact; with several, a key may be refused early
by the permits another instance holds unspent (at most a block per instance).
The leases are the one table this module keeps in memory: at most
:data:`MAX_LEASES` entries of at most :data:`LEASE_ENTRY_BYTES` each
(:data:`LEASE_TABLE_BYTES` in all); past it the closed windows go first, then
the oldest half.

The guessing throttle (:class:`GuessingThrottle`) counts wrong passwords and
one-time codes per (account, client address) and per client address, in
escalating windows, and refuses further tries until the exceeded window ends:
Authelia's regulation without its per-user ban, NIST SP 800-63B §5.2.2 (at
most 100 consecutive failures per account) and RFC 4226 §7.3 (throttle
code guessing). Nothing is counted per account alone, so a guesser elsewhere
never locks the owner out.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from policy_sso.config import GuessingSettings, RateLimit
from policy_sso.credentials import HashGate
from policy_sso.errors import RateLimited
from policy_sso.metrics import Tally
from policy_sso.sessions.store import Store, token_key

MAX_BLOCK = 32  # permits one store write may buy
EXHAUSTED = -1  # a lease's permits when the store has none left in its window
MAX_LEASES = 20_000  # keys whose unspent permits are remembered
MAX_PART = 64  # characters of a key part held in memory as given; a longer one is held as its digest
# One lease, measured (tests/test_ratelimit.py): a 3-tuple key of two MAX_PART-character strings,
# the [start, permits] list and the dict slot come to about 440 bytes on CPython 3.11.
LEASE_ENTRY_BYTES = 512
LEASE_TABLE_BYTES = MAX_LEASES * LEASE_ENTRY_BYTES  # 10 MB: the ceiling of the lease table
ADDRESS = "addr:"  # the first key part of a limit counted per client address (never a session id)


def block_size(limit: RateLimit) -> int:
    """Return how many permits one store write takes: a sixteenth of the limit, 1 to MAX_BLOCK."""
    return max(1, min(MAX_BLOCK, limit.requests // 16))


def caller_parts(session_id: str | None, client_id: str | None, address: str) -> tuple[str, ...]:
    """Return the key parts to count a call by: the known session and registered client, else the address.

    Callers pass ``session_id`` only for a session the store returned and
    ``client_id`` only for a registered client; a random cookie or an
    invented client id is counted against the address it came from, so
    floods of unique values share one bucket per address instead of filling
    memory, and they never touch the buckets of real sessions.
    """
    if session_id is not None and client_id is not None:
        return (session_id, client_id)
    return (ADDRESS, address)


class RateLimiter:
    """Checks named limits (``silent_auth``, ``status``, ``login``) against store counters."""

    def __init__(self, store: Store, limits: Mapping[str, RateLimit], refusals: Tally | None = None,
                 guessing: GuessingSettings | None = None) -> None:
        self.store = store
        self.limits = dict(limits)
        self.refusals = refusals if refusals is not None else Tally()  # by kind, for metrics
        self.guessing = GuessingThrottle(store, guessing or GuessingSettings(), self.refusals)
        # (kind, *parts) -> [window start, permits left]: what this process holds unspent
        self._leases: dict[tuple[str, ...], list[int]] = {}
        self._lock = threading.Lock()

    def check(self, kind: str, *parts: str, now: int) -> None:
        """Count one request of ``kind`` for the key ``parts``; raise RateLimited past the limit.

        Parts must be validated identities (see :func:`caller_parts`); session
        ids are secrets, so the store's key is a digest.
        """
        limit = self.limits.get(kind)
        if limit is None:
            return
        held_as = (kind, *parts)  # leases are looked up as given; only the store's key is a digest
        for part in parts:
            if len(part) > MAX_PART:  # bounded whatever a caller passes: the table's ceiling holds
                held_as = (kind, token_key("\x1f".join(parts)))
                break
        start = now - now % limit.window
        with self._lock:
            lease = self._leases.get(held_as)
            if lease is not None and lease[0] == start:
                if lease[1] > 0:
                    lease[1] -= 1
                    return
                if lease[1] == EXHAUSTED:  # permits handed out are never given back: refused until reset
                    raise self._refusal(kind, limit, start + limit.window - now)
        block = block_size(limit)
        key = f"rl:{kind}:" + token_key("\x1f".join(parts))
        count, reset_at = self.store.hit(key, limit.window, now, block)
        granted = min(block, limit.requests - (count - block))  # what the limit left of this block
        with self._lock:
            if len(self._leases) >= MAX_LEASES:
                self._evict(now)
            held = self._leases.get(held_as)
            if granted <= 0:
                self._leases[held_as] = [start, EXHAUSTED]
            elif held is not None and held[0] == start and held[1] > 0:
                held[1] += granted - 1  # another thread leased for this key meanwhile: pool them
            else:
                self._leases[held_as] = [start, granted - 1]
        if granted <= 0:
            raise self._refusal(kind, limit, reset_at - now)

    def check_caller(self, kind: str, session_id: str | None, client_id: str | None, address: str, *,
                     now: int) -> None:
        """Count a call by its known session and registered client, else by its address (see caller_parts)."""
        self.check(kind, *caller_parts(session_id, client_id, address), now=now)

    def lease_count(self) -> int:
        """Return how many leases this process holds (at most MAX_LEASES)."""
        return len(self._leases)

    def _evict(self, now: int) -> None:
        # Under the lock. Leases of closed windows are worth nothing; if the table is still over
        # half full, the older half goes too. Rebuilding costs O(n) once per n/2 inserts, where
        # popping the first key of a dict one at a time rescans the deleted slots before it.
        open_windows = [(k, v) for k, v in self._leases.items()
                        if (limit := self.limits.get(k[0])) is not None and v[0] + limit.window > now]
        self._leases = dict(open_windows[-(MAX_LEASES // 2):])

    def _refusal(self, kind: str, limit: RateLimit, seconds_left: int) -> RateLimited:
        self.refusals.add(kind)
        retry_after = max(1, seconds_left)
        return RateLimited(f"too many {kind.replace('_', ' ')} requests: {limit.requests} per "
                           f"{limit.window}s; retry after {retry_after}s", retry_after)


class GuessingThrottle:
    """Failures of one factor (``pwd``, ``otp``) per (account, address) and per address, with backoff.

    Counted in the store, so every instance sees every failure; keyed by
    digests, so neither a username nor an address is stored as sent. Each
    key has tiers (e.g. 5 a minute, 20 an hour, 100 a day): passing a tier's
    count refuses further tries until that tier's window ends, so repeated
    guessing meets longer and longer waits.
    """

    def __init__(self, store: Store, settings: GuessingSettings, refusals: Tally) -> None:
        self.store = store
        self.settings = settings
        self.refusals = refusals
        self.hashing = HashGate(settings.concurrent_hashes, settings.hash_wait_ms / 1000)

    def _counters(self, factor: str, account: str, address: str) -> list[tuple[str, RateLimit]]:
        pair = token_key(f"{account}\x1f{address}")
        alone = token_key(address)
        per_pair = enumerate(self.settings.per_account_address)
        per_address = enumerate(self.settings.per_address)
        return [*((f"gu:{factor}:a{i}:{pair}", tier) for i, tier in per_pair),
                *((f"gu:{factor}:i{i}:{alone}", tier) for i, tier in per_address)]

    def admit(self, factor: str, account: str, address: str, now: int) -> None:
        """Raise RateLimited (429, Retry-After) while the account-and-address or the address is throttled.

        Called before the secret is checked, so a throttled guess costs no
        hashing and learns nothing, right or wrong.
        """
        wait = 0
        for key, tier in self._counters(factor, account, address):
            count, reset_at = self.store.hit(key, tier.window, now, 0)  # amount 0: read the count
            if count >= tier.requests:
                wait = max(wait, reset_at - now)
        if wait > 0:
            self.refusals.add("password" if factor == "pwd" else factor)
            raise RateLimited(f"too many failed sign-in attempts; try again in {wait}s", wait)

    def failed(self, factor: str, account: str, address: str, now: int) -> None:
        """Record one wrong password or code for the account at the address."""
        for key, tier in self._counters(factor, account, address):
            self.store.hit(key, tier.window, now, 1)
