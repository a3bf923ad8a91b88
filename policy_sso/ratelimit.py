"""Rate limits for silent authentication and session-status polls (SPEC §4).

Counters live in the store (``Store.hit``, a fixed window), so every server
instance sharing a store shares the limits. Limits are keyed by what is being
protected: the session and the client, so one busy session cannot starve
another.
"""

from __future__ import annotations

from collections.abc import Mapping

from policy_sso.config import RateLimit
from policy_sso.errors import RateLimited
from policy_sso.sessions.store import Store, token_key


class RateLimiter:
    """Checks named limits (``silent_auth``, ``status``, ``login``) against store counters."""

    def __init__(self, store: Store, limits: Mapping[str, RateLimit]) -> None:
        self.store = store
        self.limits = dict(limits)

    def check(self, kind: str, *parts: str, now: int) -> None:
        """Count one request of ``kind`` for the key ``parts``; raise RateLimited past the limit.

        Session ids are secrets: they are hashed into the counter key, never stored as-is.
        """
        limit = self.limits.get(kind)
        if limit is None:
            return
        key = f"rl:{kind}:" + token_key("\x1f".join(parts))
        count, reset_at = self.store.hit(key, limit.window, now)
        if count > limit.requests:
            retry_after = max(1, reset_at - now)
            raise RateLimited(
                f"too many {kind.replace('_', ' ')} requests: {limit.requests} per {limit.window}s; "
                f"retry after {retry_after}s", retry_after)
