"""Rate limits for silent authentication and session-status polls (SPEC §4).

Counters live in the store (``Store.hit``, a fixed window), so every server
instance sharing a store shares the limits. Limits are keyed by what is being
protected: the session and the client, so one busy session cannot starve
another.

A limiter takes permits from the store in blocks (a lease): one store write
buys up to :func:`block_size` requests, which this process then spends from
memory until the block or the window runs out. The store's count is the
number of permits handed out, and each block is cut to what the limit leaves,
so the instances sharing a store together never allow more than the limit;
once the store has none left, the process refuses from memory until the
window resets.
In one process the limit is exact; with several, a key may be refused early
by the permits another instance holds unspent (at most a block per instance).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from policy_sso.config import RateLimit
from policy_sso.errors import RateLimited
from policy_sso.metrics import Tally
from policy_sso.sessions.store import Store, token_key

MAX_BLOCK = 32  # permits one store write may buy
EXHAUSTED = -1  # a lease's permits when the store has none left in its window
MAX_LEASES = 100_000  # keys whose unspent permits are remembered; past it the oldest are forgotten


def block_size(limit: RateLimit) -> int:
    """Return how many permits one store write takes: a sixteenth of the limit, 1 to MAX_BLOCK."""
    return max(1, min(MAX_BLOCK, limit.requests // 16))


class RateLimiter:
    """Checks named limits (``silent_auth``, ``status``, ``login``) against store counters."""

    def __init__(self, store: Store, limits: Mapping[str, RateLimit], refusals: Tally | None = None) -> None:
        self.store = store
        self.limits = dict(limits)
        self.refusals = refusals if refusals is not None else Tally()  # by kind, for metrics
        # (kind, *parts) -> [window start, permits left]: what this process holds unspent
        self._leases: dict[tuple[str, ...], list[int]] = {}
        self._lock = threading.Lock()

    def check(self, kind: str, *parts: str, now: int) -> None:
        """Count one request of ``kind`` for the key ``parts``; raise RateLimited past the limit.

        Session ids are secrets: they are hashed into the counter key, never stored as-is.
        """
        limit = self.limits.get(kind)
        if limit is None:
            return
        held_as = (kind, *parts)  # leases are looked up as given; only the store's key is a digest
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
                self._leases.pop(next(iter(self._leases)))  # dicts keep insertion order: the oldest goes
            held = self._leases.get(held_as)
            if granted <= 0:
                self._leases[held_as] = [start, EXHAUSTED]
            elif held is not None and held[0] == start and held[1] > 0:
                held[1] += granted - 1  # another thread leased for this key meanwhile: pool them
            else:
                self._leases[held_as] = [start, granted - 1]
        if granted <= 0:
            raise self._refusal(kind, limit, reset_at - now)

    def _refusal(self, kind: str, limit: RateLimit, seconds_left: int) -> RateLimited:
        self.refusals.add(kind)
        retry_after = max(1, seconds_left)
        return RateLimited(f"too many {kind.replace('_', ' ')} requests: {limit.requests} per "
                           f"{limit.window}s; retry after {retry_after}s", retry_after)
