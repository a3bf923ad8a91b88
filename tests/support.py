"""Test helpers shared by the test directories: a fake clock, app test clients, free ports, a
throwaway redis-server (or Redis Cluster), waitress in a thread.

``tests/`` is on ``sys.path`` for every test (pytest's rootdir import mode puts the directory of
``tests/conftest.py`` there), so any test or conftest imports this module as ``support``.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from requests.adapters import HTTPAdapter

from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app

START = 1_800_000_000  # the fake clocks' first second (2027-01-15 08:00 UTC)

REDIS_MISSING = ("redis-server is not installed: the Redis tests need a real server "
                 "(apt-get install redis-server)")


class FakeClock:
    """The server's clock; tests move it forward to hit limits to the second."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


def app_client(tenant: Tenant, ring: Any, clock: Any, store: Any = None,
               **options: Any) -> falcon.testing.TestClient:
    """Return a falcon TestClient of the app for ``tenant`` (on a fresh memory store unless given one).

    ``options`` go to ``create_app`` as they are (``audit=``, ``cookie_key=``...).
    """
    store = store or open_store("memory://", tenant.settings.lifetime)
    return falcon.testing.TestClient(create_app(tenant, store, ring, clock=clock, **options))


def free_port() -> int:
    """Return a loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, name: str, timeout: float = 10) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; else kill ``process`` and fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"{name} did not start")


def redis_binary() -> str:
    """Return the path of redis-server; skip the test (saying how to install it) where it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_MISSING)
    return binary


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Yield the URL of a throwaway redis-server on 127.0.0.1 (no persistence), stopped afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_listening(port, process, "redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


REDIS_CLUSTER_SLOTS = 16384


@contextlib.contextmanager
def redis_cluster(workdir: Path, masters: int = 3) -> Iterator[str]:
    """Yield the ``redis+cluster://`` URL of a throwaway Redis Cluster of ``masters`` nodes on 127.0.0.1.

    Each node is a redis-server with ``--cluster-enabled yes`` on a free port (its bus on another);
    the slots are split by hand (CLUSTER ADDSLOTSRANGE, MEET), which takes well under a second where
    ``redis-cli --cluster create`` waits a second or more. Skips loudly where it cannot start.
    """
    import redis

    binary = redis_binary()
    processes: list[subprocess.Popen] = []
    ports: list[int] = []
    buses: list[int] = []
    try:
        for i in range(masters):
            port, bus = free_port(), free_port()
            processes.append(subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
                 "--cluster-port", str(bus), "--cluster-config-file", str(workdir / f"nodes-{i}.conf"),
                 "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            ports.append(port)
            buses.append(bus)
        for port, process in zip(ports, processes, strict=True):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.05)
            if process.poll() is not None:  # e.g. a redis-server built without cluster support
                pytest.skip(f"redis-server would not start as a cluster node: "
                            f"{process.stderr.read().decode(errors='replace')[-300:]}")  # type: ignore[union-attr]
        nodes = [redis.Redis(port=port, socket_timeout=5) for port in ports]
        share = REDIS_CLUSTER_SLOTS // masters
        for i, node in enumerate(nodes):
            last = REDIS_CLUSTER_SLOTS - 1 if i == masters - 1 else (i + 1) * share - 1
            node.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)  # distinct: no collision to settle
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for port, bus in zip(ports[1:], buses[1:], strict=True):  # the bus is not port + 10000 here
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)
        deadline = time.monotonic() + 20
        while True:
            infos = [node.execute_command("CLUSTER", "INFO").decode() for node in nodes]
            if all("cluster_state:ok" in info and f"cluster_known_nodes:{masters}" in info for info in infos):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the Redis Cluster did not reach cluster_state:ok: {infos[0][:200]}")
            time.sleep(0.05)
        for node in nodes:
            node.close()
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


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


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL on 127.0.0.1, stopped afterwards."""
    # not under pytest's tmp_path: that is private to root (0700), and the server runs as postgres
    workdir = Path(tempfile.mkdtemp(prefix="policy-sso-pg-"))
    try:
        url, stop = start_postgres(workdir)
        try:
            yield url
        finally:
            stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def loopback_server(threads: int = 4) -> Any:
    """Return the server ``serve`` runs, on a free loopback port; set its ``application`` before serving.

    The port is known before the app is built, so the app can be given its own issuer URL. As under
    ``serve``, the quick routes run on the I/O loop and the rest on ``threads`` (server.dispatch).
    """
    from server.app import LOOP_PATHS
    from server.limits import create_server

    return create_server(lambda env, start: [], host="127.0.0.1", port=0, threads=threads,
                         loop_paths=LOOP_PATHS)


@contextlib.contextmanager
def serving(server: Any) -> Iterator[Any]:
    """Run waitress ``server`` in a daemon thread for the block; yield it; close it afterwards."""
    stop = threading.Event()

    def run() -> None:
        # waitress's own run() blocks in poll(); this loop can be stopped between turns
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1, use_poll=True)
        server.close()
        server.task_dispatcher.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=10)


class FromAddress(HTTPAdapter):
    """Connections from a chosen local address (what a client elsewhere on the network looks like)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
