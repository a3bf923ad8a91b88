"""Fixtures for the audit tests: a throwaway redis-server, event factories."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

REDIS_MISSING = "redis-server is not installed (apt-get install redis-server)"


def free_port() -> int:
    """Return a loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_MISSING)
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


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
