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
