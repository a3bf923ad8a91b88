"""Fixtures for the audit tests: a throwaway redis-server, event factories."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from support import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL (the session store tests' server, started the same way)."""
    import importlib.util
    import tempfile
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_store_fixtures",
                                                  Path(__file__).parents[1] / "sessions" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(fixtures)  # type: ignore[union-attr]
    workdir = Path(tempfile.mkdtemp(prefix="policy-sso-pg-"))  # not under pytest's 0700 tmp: postgres runs it
    try:
        url, stop = fixtures.start_postgres(workdir)
        yield url
        stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
