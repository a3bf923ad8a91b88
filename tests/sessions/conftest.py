"""Store fixtures: every backend behind one parametrized ``store`` fixture.

Redis runs as a real ``redis-server`` the tests start on a free loopback
port, PostgreSQL as a real server initdb'd into a temporary directory (as the
``postgres`` user when the tests run as root); where a binary is missing those
tests skip and say how to install it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import free_port, redis_server

from policy_sso.sessions import SessionLifetime, Store, open_store
from policy_sso.sessions.store import StoreOptions

LIFETIME = SessionLifetime(sliding=14 * 86400, absolute=30 * 86400, inactivity=86400, touch_interval=60)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield the URL of a throwaway redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


PG_BIN_DIRS = ("/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
POSTGRES_MISSING = ("PostgreSQL is not installed: the PostgreSQL store tests need initdb and pg_ctl "
                    "(apt-get install postgresql; found on PATH or in /usr/lib/postgresql/*/bin)")
PSYCOPG_MISSING = "psycopg is not installed: pip install -e '.[test]' (psycopg[binary], psycopg-pool)"


def postgres_binaries() -> Path | None:
    """Return the directory holding initdb, pg_ctl and createdb, or None."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(d) for d in PG_BIN_DIRS]
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "createdb")):
            return directory
        if (directory / "initdb").exists():  # /usr/local/bin links: the real directory has createdb
            real = (directory / "initdb").resolve().parent
            if (real / "createdb").exists() and (real / "pg_ctl").exists():
                return real
    return None


def _as_postgres_user(argv: list[str]) -> list[str]:
    """Return ``argv`` run as the unprivileged ``postgres`` user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: initdb refuses root")
    return [runuser, "-u", "postgres", "--", *argv]


def start_postgres(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Start a throwaway PostgreSQL in ``workdir`` on a free loopback port; return its URL and a stop.

    Skips loudly where the binaries or psycopg are missing.
    """
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        pytest.skip(PSYCOPG_MISSING)
    bindir = postgres_binaries()
    if bindir is None:
        pytest.skip(POSTGRES_MISSING)
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None:
        shutil.chown(workdir, user)
    data, sockets = workdir / "data", workdir / "sock"
    sockets.mkdir()
    if user is not None:
        shutil.chown(sockets, user)
    subprocess.run(_as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "psso",
                                      "--no-sync", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    port = free_port()
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
               "-c shared_buffers=32MB")
    subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                                      "-t", "60", "-l", str(workdir / "log"), "start"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90)

    def stop() -> None:
        subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                          "-w", "stop"]), check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)

    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "psso", "psso"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    except BaseException:
        stop()
        raise
    return f"postgresql://psso@127.0.0.1:{port}/psso", stop


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL on 127.0.0.1 (initdb in a temporary directory)."""
    # not under pytest's tmp_path: that is private to root (0700), and the server runs as postgres
    workdir = Path(tempfile.mkdtemp(prefix="policy-sso-pg-"))
    try:
        url, stop = start_postgres(workdir)
        yield url
        stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
                                      ("postgres", "policy_sso.sessions.postgres"))
            if importlib.util.find_spec(module) is not None]


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
