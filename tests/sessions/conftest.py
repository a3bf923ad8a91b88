"""Store fixtures: every backend behind one parametrized ``store`` fixture.

Redis runs as a real ``redis-server`` the tests start on a free loopback
port; where the binary is missing those tests skip and say how to install it.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from policy_sso.sessions import SessionLifetime, Store, open_store
from policy_sso.sessions.store import StoreOptions

LIFETIME = SessionLifetime(sliding=14 * 86400, absolute=30 * 86400, inactivity=86400, touch_interval=60)
REDIS_MISSING = ("redis-server is not installed: the Redis store tests need a real server "
                 "(apt-get install redis-server)")


def free_port() -> int:
    """Return a loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a throwaway redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_MISSING)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


BACKENDS = [name for name, module in (("memory", "policy_sso.sessions.memory"),
                                      ("sqlite", "policy_sso.sessions.sqlite"),
                                      ("redis", "policy_sso.sessions.redis"))
            if importlib.util.find_spec(module) is not None]


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Return the URL of an empty store of ``backend`` (the Redis database is flushed)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
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
