"""Rate limits: past the limit a call is refused with Retry-After; others are unaffected; windows recover."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from policy_sso.config import GuessingSettings, RateLimit, guessing_settings, tenant_settings
from policy_sso.errors import RateLimited
from policy_sso.metrics import Tally
from policy_sso.oidc.authorize import RequestShapes
from policy_sso.ratelimit import (
    ADDRESS,
    LEASE_ENTRY_BYTES,
    LEASE_TABLE_BYTES,
    MAX_LEASES,
    MAX_PART,
    GuessingThrottle,
    RateLimiter,
    caller_parts,
)
from policy_sso.sessions import SessionLifetime, open_store
from policy_sso.tenant import load_tenant
from policy_sso.validate import tenant_rules

DEMO = Path(__file__).resolve().parents[1] / "policies"

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


# --- keys: validated identities or the address, never raw input --------------------------------

def test_a_call_without_a_known_session_is_counted_by_address():
    assert caller_parts("sess-1", "portal", "10.0.0.1") == ("sess-1", "portal")
    assert caller_parts(None, "portal", "10.0.0.1") == (ADDRESS, "10.0.0.1")
    assert caller_parts("sess-1", None, "10.0.0.1") == (ADDRESS, "10.0.0.1")


def test_random_cookies_share_their_address_bucket_and_spare_real_sessions(limiter):
    for _ in range(3):  # three floods from one address, each with a fresh unknown cookie
        limiter.check_caller("silent_auth", None, "portal", "10.0.0.1", now=NOW)
    with pytest.raises(RateLimited):
        limiter.check_caller("silent_auth", None, "portal", "10.0.0.1", now=NOW)
    limiter.check_caller("silent_auth", None, "portal", "10.0.0.2", now=NOW)  # another address
    limiter.check_caller("silent_auth", "known-session", "portal", "10.0.0.1", now=NOW)  # a real user there


class FreeStore:
    """A store whose counters cost nothing to keep: only the limiter's own memory is measured."""

    def hit(self, key: str, window: int, now: int, amount: int = 1) -> tuple[int, int]:
        return amount, now - now % window + window


def test_the_lease_table_stays_under_its_ceiling_in_bytes():
    limiter = RateLimiter(FreeStore(), {"silent_auth": RateLimit(1000, 60)})  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5000):  # the widest keys a caller may hold as given
            limiter.check("silent_auth", f"{i:0{MAX_PART}d}", f"{i:0{MAX_PART}x}", now=NOW)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 5000
        for i in range(MAX_LEASES * 2):  # unique keys, some far longer than MAX_PART: held as digests
            limiter.check("silent_auth", f"flood-{i}" * (1 + i % 50), "portal", now=NOW + i // 1000)
        total = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert per_entry < LEASE_ENTRY_BYTES
    assert limiter.lease_count() <= MAX_LEASES
    assert total < LEASE_TABLE_BYTES
    assert LEASE_TABLE_BYTES <= 16 * 1024 * 1024  # docs/security.md states 10 MB


def test_eviction_keeps_the_current_windows_leases():
    store = CountingStore()
    limiter = RateLimiter(store, {"silent_auth": RateLimit(320, 60)})  # type: ignore[arg-type]
    for i in range(MAX_LEASES):
        limiter.check("silent_auth", f"old-{i}", "portal", now=NOW)  # a closed window by the flood's time
    limiter.check("silent_auth", "busy", "portal", now=NOW + 60)
    for i in range(MAX_LEASES):
        limiter.check("silent_auth", f"new-{i}", "portal", now=NOW + 60)
    assert limiter.lease_count() <= MAX_LEASES
    writes = len(store.writes)
    limiter.check("silent_auth", f"new-{MAX_LEASES - 1}", "portal", now=NOW + 60)  # recent: still leased
    assert len(store.writes) == writes


# --- the guessing throttle ---------------------------------------------------------------------

GUESSING = GuessingSettings(per_account_address=(RateLimit(3, 60), RateLimit(5, 3600)),
                            per_address=(RateLimit(8, 60),))


@pytest.fixture
def throttle() -> GuessingThrottle:
    return GuessingThrottle(open_store("memory://", SessionLifetime()), GUESSING, Tally())


def fail(throttle: GuessingThrottle, times: int, account: str = "u-alice", address: str = "10.0.0.9",
         now: int = NOW, factor: str = "pwd") -> None:
    for _ in range(times):
        throttle.admit(factor, account, address, now)
        throttle.failed(factor, account, address, now)


def test_guessing_is_refused_after_the_tier_until_its_window_ends(throttle):
    fail(throttle, 3, now=NOW + 5)
    with pytest.raises(RateLimited) as refused:
        throttle.admit("pwd", "u-alice", "10.0.0.9", NOW + 5)
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "55"}
    throttle.admit("pwd", "u-alice", "10.0.0.9", NOW + 60)  # the minute is over


def test_the_owner_at_another_address_is_not_locked_out(throttle):
    fail(throttle, 3)
    with pytest.raises(RateLimited):
        throttle.admit("pwd", "u-alice", "10.0.0.9", NOW)
    throttle.admit("pwd", "u-alice", "192.0.2.7", NOW)  # alice at home
    throttle.admit("pwd", "u-bob", "10.0.0.9", NOW)  # and bob at the guesser's address, for now


def test_repeated_guessing_meets_a_longer_wait(throttle):
    fail(throttle, 3, now=NOW)
    fail(throttle, 2, now=NOW + 60)  # the second minute: the hourly tier (5) is now full
    with pytest.raises(RateLimited) as refused:
        throttle.admit("pwd", "u-alice", "10.0.0.9", NOW + 120)
    assert refused.value.retry_after == 3600 - 120  # the backoff: until the hour's window ends


def test_spraying_many_accounts_from_one_address_is_throttled(throttle):
    for i in range(8):
        fail(throttle, 1, account=f"u-{i}")
    with pytest.raises(RateLimited):
        throttle.admit("pwd", "u-new", "10.0.0.9", NOW)
    throttle.admit("pwd", "u-new", "10.0.0.10", NOW)


def test_passwords_and_codes_are_counted_apart(throttle):
    fail(throttle, 3, factor="otp")
    with pytest.raises(RateLimited):
        throttle.admit("otp", "u-alice", "10.0.0.9", NOW)
    throttle.admit("pwd", "u-alice", "10.0.0.9", NOW)


def test_instances_sharing_a_store_share_the_failures():
    store = open_store("memory://", SessionLifetime())
    a, b = (GuessingThrottle(store, GUESSING, Tally()) for _ in range(2))
    fail(a, 2)
    fail(b, 1)
    with pytest.raises(RateLimited):
        a.admit("pwd", "u-alice", "10.0.0.9", NOW)


def test_failure_counters_are_stored_under_digests(throttle):
    fail(throttle, 1, account="?mallory-" + "x" * 5000, address="10.0.0.9")
    keys = [key for key, _ in throttle.store._counters]  # type: ignore[attr-defined]
    assert keys and all(len(k) < 80 and "mallory" not in k and "10.0.0.9" not in k for k in keys)


# --- the authorization-request shape cache: bounded in bytes ----------------------------------

def _shape_flood(kind: str, i: int, room: int) -> dict[str, str]:
    params = {"client_id": "portal", "redirect_uri": "http://127.0.0.1:9001/callback",
              "response_type": "code", "scope": "openid", "state": "s", "nonce": "n"}
    room -= sum(map(len, params.values())) + sum(map(len, params)) + len(kind)
    if kind == "acr_values":  # the widest expansion: each 1-3 character value becomes its own string
        params[kind] = " ".join(f"{j % 10}{i}" for j in range(room))[:room].rstrip()
    else:
        params[kind] = "x" * room
    return params


@pytest.mark.parametrize("kind", ["acr_values", "state"], ids=["many-acr-values", "long-state"])
def test_the_shape_cache_stays_under_its_ceiling_in_bytes(kind):
    shapes = RequestShapes(load_tenant(DEMO).clients, "http://127.0.0.1:8080")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            shapes.validate(_shape_flood(kind, i, RequestShapes.MAX_SHAPE_CHARS))
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / max(1, len(shapes))
    finally:
        tracemalloc.stop()
    assert len(shapes) >= 1  # the widest kept shape was measured
    assert per_entry < RequestShapes.SHAPE_ENTRY_BYTES
    assert RequestShapes.LIMIT * RequestShapes.SHAPE_ENTRY_BYTES <= 8 * 1024 * 1024  # docs/security.md


def test_a_request_too_large_to_keep_is_validated_but_not_kept():
    shapes = RequestShapes(load_tenant(DEMO).clients, "http://127.0.0.1:8080")
    for i in range(50):
        areq = shapes.validate(_shape_flood("acr_values", i, 200 * 1024))
        assert areq.client.client_id == "portal"
    assert len(shapes) == 0


# --- settings: tenant.yaml's guessing and trusted_proxies --------------------------------------

def test_guessing_settings_default_and_parse():
    assert guessing_settings({}) == GuessingSettings()
    parsed = guessing_settings({"per_account_address": [{"failures": 3, "window": "1m"}],
                                "concurrent_hashes": 2, "hash_wait_ms": 50})
    assert parsed.per_account_address == (RateLimit(3, 60),)
    assert parsed.per_address == GuessingSettings().per_address  # left out: the default
    assert (parsed.concurrent_hashes, parsed.hash_wait_ms) == (2, 50)


@pytest.mark.parametrize(("cidr", "codes"), [("10.0.0.0/8", []), ("::1", []),
                                             ("999.1.1.1", ["E_TRUSTED_PROXY"]),
                                             ("10.0.0.0/33", ["E_TRUSTED_PROXY"])],
                         ids=["ipv4-cidr", "ipv6-address", "not-an-address", "prefix-too-long"])
def test_trusted_proxies_are_addresses_or_cidrs(cidr, codes):
    settings = tenant_settings({"issuer": "https://op.example", "trusted_proxies": [cidr]}, {})
    assert settings.trusted_proxies == (cidr,)
    assert [d.code for d in tenant_rules(settings)] == codes
