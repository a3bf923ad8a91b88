"""Fixtures for the audit tests: a throwaway redis-server, event factories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import postgres_server, redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL (the session store tests' server, started the same way)."""
    with postgres_server() as url:
        yield url
