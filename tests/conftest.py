"""Shared fixtures: the demo tenant (path, loaded, key ring), the compliance tenant, a clock, real stores.

Redis and PostgreSQL are real servers on free loopback ports, started on first use and shared by the
whole run; each test empties what it uses (``flushdb``, ``TRUNCATE``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import FakeClock, postgres_server, redis_cluster, redis_server

from policy_sso.oidc.keys import KeyRing
from policy_sso.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return ROOT / "policies"


@pytest.fixture(scope="session")
def cases_tenant_dir() -> Path:
    return ROOT / "tests" / "cases" / "tenant"


@pytest.fixture(scope="session")
def demo(demo_dir: Path) -> Tenant:
    """Return the demo tenant (a module that needs another tenant under this name defines its own)."""
    return load_tenant(demo_dir)


@pytest.fixture(scope="session")
def ring(tmp_path_factory: pytest.TempPathFactory, demo: Tenant) -> Any:
    """Return a signing key ring for the demo tenant's algorithms, in a temporary directory."""
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"), demo.settings.tokens.algorithms)


@pytest.fixture
def clock() -> FakeClock:
    """Return a fresh fake clock at ``support.START``."""
    return FakeClock()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a throwaway redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the ``redis+cluster://`` URL of a throwaway 3-master Redis Cluster on 127.0.0.1."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL on 127.0.0.1 (initdb in a temporary directory)."""
    with postgres_server() as url:
        yield url
