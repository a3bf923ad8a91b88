"""Store fixtures: every backend behind one parametrized ``store`` fixture.

Redis runs as a real ``redis-server`` the tests start on a free loopback
port, and as a 3-master Redis Cluster of them (``redis_cluster``); PostgreSQL
as a real server initdb'd into a temporary directory (as the ``postgres`` user
when the tests run as root); where a binary is missing those tests skip and
say how to install it (``redis_url``, ``redis_cluster_url``, ``postgres_url``:
tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policy_sso.sessions import SessionLifetime, Store, open_store
from policy_sso.sessions.store import StoreOptions

LIFETIME = SessionLifetime(sliding=14 * 86400, absolute=30 * 86400, inactivity=86400, touch_interval=60)


def empty_postgres(url: str) -> None:
    """Empty every table of the policy-sso schema (kept, so each test starts on a migrated database)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        tables = [row[0] for row in db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename != 'policy_sso_schema'")]
        if tables:
            db.execute("TRUNCATE " + ", ".join(tables))


BACKENDS = [name for name, module in (("memory", "policy_sso.sessions.memory"),
                                      ("sqlite", "policy_sso.sessions.sqlite"),
                                      ("redis", "policy_sso.sessions.redis"),
                                      ("redis_cluster", "policy_sso.sessions.redis"),
                                      ("postgres", "policy_sso.sessions.postgres"))
            if importlib.util.find_spec(module) is not None]


_FLUSHERS: dict[str, Any] = {}


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Return the URL of an empty store of ``backend`` (the Redis database is flushed)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        empty_postgres(url)
        return url
    if backend == "redis_cluster":  # three masters: every script's keys must share one slot
        from redis.cluster import RedisCluster

        from policy_sso.sessions.redis import connect

        url = request.getfixturevalue("redis_cluster_url")
        if url not in _FLUSHERS:  # one client for the run: each costs ~80 ms (slot map, command table)
            _FLUSHERS[url] = connect(url, 5)
        _FLUSHERS[url].flushall(target_nodes=RedisCluster.PRIMARIES)
        return url
    url = request.getfixturevalue("redis_url")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[StoreOptions], Store]]:
    """Yield a function opening an empty store of each backend in turn with given options."""
    opened: list[Store] = []

    def make(options: StoreOptions) -> Store:
        opened.append(open_store(store_url(request.param, tmp_path, request), LIFETIME, options))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Yield an empty store of each backend in turn, closed afterwards."""
    store = open_store(store_url(request.param, tmp_path, request), LIFETIME)
    yield store
    store.close()
