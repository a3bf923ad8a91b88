"""Rate limits: past the limit a call is refused with Retry-After; others are unaffected; windows recover."""

from __future__ import annotations

import pytest

from policy_sso.config import RateLimit
from policy_sso.errors import RateLimited
from policy_sso.ratelimit import RateLimiter
from policy_sso.sessions import SessionLifetime, open_store

NOW = 1_767_268_800  # a multiple of 60: the fixed windows start here


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(open_store("memory://", SessionLifetime()), {"silent_auth": RateLimit(3, 60)})


def test_the_call_past_the_limit_is_refused_with_retry_after(limiter):
    for _ in range(3):
        limiter.check("silent_auth", "session-a", "portal", now=NOW + 10)
    with pytest.raises(RateLimited) as refused:
        limiter.check("silent_auth", "session-a", "portal", now=NOW + 10)
    assert refused.value.status == 429
    assert refused.value.error == "temporarily_unavailable"
    assert refused.value.headers == {"Retry-After": "50"}


@pytest.mark.parametrize("other", [("session-b", "portal"), ("session-a", "docs")],
                         ids=["other-session", "other-client"])
def test_other_sessions_and_clients_are_unaffected(limiter, other):
    for _ in range(3):
        limiter.check("silent_auth", "session-a", "portal", now=NOW)
    with pytest.raises(RateLimited):
        limiter.check("silent_auth", "session-a", "portal", now=NOW)
    limiter.check("silent_auth", *other, now=NOW)


def test_the_window_recovers(limiter):
    for _ in range(3):
        limiter.check("silent_auth", "s", "c", now=NOW + 59)
    with pytest.raises(RateLimited):
        limiter.check("silent_auth", "s", "c", now=NOW + 59)
    limiter.check("silent_auth", "s", "c", now=NOW + 60)


def test_an_unconfigured_kind_is_unlimited(limiter):
    for _ in range(100):
        limiter.check("status", "s", "c", now=NOW)


# --- leases: permits taken from the store in blocks ------------------------------------------

def allowed(limiter: RateLimiter, calls: int, now: int = NOW) -> int:
    """Return how many of ``calls`` checks for one key pass."""
    passed = 0
    for _ in range(calls):
        try:
            limiter.check("silent_auth", "session-a", "portal", now=now)
            passed += 1
        except RateLimited:
            pass
    return passed


class CountingStore:
    """A memory store that records the amount of each counter write."""

    def __init__(self) -> None:
        self.store = open_store("memory://", SessionLifetime())
        self.writes: list[int] = []

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        self.writes.append(amount)
        return self.store.hit(key, window, now, amount)


def test_one_store_write_buys_a_block_of_permits():
    store = CountingStore()
    limiter = RateLimiter(store, {"silent_auth": RateLimit(64, 60)})  # type: ignore[arg-type]
    assert allowed(limiter, 4) == 4
    assert store.writes == [4]  # a block is a sixteenth of the limit
    assert allowed(limiter, 1) == 1
    assert store.writes == [4, 4]


def test_the_last_block_is_cut_to_what_the_limit_leaves():
    store = CountingStore()
    limiter = RateLimiter(store, {"silent_auth": RateLimit(70, 60)})  # type: ignore[arg-type]
    assert allowed(limiter, 100) == 70
    # 18 blocks (the 18th cut to 2), then one write found the window spent: later refusals cost none
    assert store.writes == [4] * 19
    assert allowed(limiter, 10, now=NOW + 59) == 0
    assert store.writes == [4] * 19
    assert allowed(limiter, 1, now=NOW + 60) == 1


@pytest.mark.parametrize("requests", [3, 16, 70, 1000])
def test_one_process_allows_exactly_the_limit(requests):
    store = open_store("memory://", SessionLifetime())
    limiter = RateLimiter(store, {"silent_auth": RateLimit(requests, 60)})
    assert allowed(limiter, requests + 50) == requests
    assert allowed(limiter, 3, now=NOW + 60) == 3  # the next window starts afresh


@pytest.mark.parametrize("requests", [16, 70, 1000])
def test_instances_sharing_a_store_never_allow_more_than_the_limit(requests):
    store = open_store("memory://", SessionLifetime())
    a, b = (RateLimiter(store, {"silent_auth": RateLimit(requests, 60)}) for _ in range(2))
    total = 0
    for _ in range(requests + 50):  # the two instances take turns
        total += allowed(a, 1) + allowed(b, 1)
    assert total == requests  # every permit handed out is spent by the instance holding it
    assert allowed(a, 3) == allowed(b, 3) == 0


def test_an_instance_may_be_refused_early_while_another_holds_permits():
    store = open_store("memory://", SessionLifetime())
    a, b = (RateLimiter(store, {"silent_auth": RateLimit(64, 60)}) for _ in range(2))
    assert allowed(a, 1) == 1  # a holds 3 unspent permits
    assert allowed(b, 64) == 60  # b gets what is left
    assert allowed(a, 5) == 3  # a still spends its own
