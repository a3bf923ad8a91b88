"""Test helpers shared by the test directories: a fake clock, app test clients, free ports, a
throwaway redis-server, waitress in a thread.

``tests/`` is on ``sys.path`` for every test (pytest's rootdir import mode puts the directory of
``tests/conftest.py`` there), so any test or conftest imports this module as ``support``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import waitress

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


def loopback_server(threads: int = 4) -> Any:
    """Return a waitress server bound to a free loopback port; set its ``application`` before serving.

    The port is known before the app is built, so the app can be given its own issuer URL.
    """
    return waitress.create_server(lambda env, start: [], host="127.0.0.1", port=0, threads=threads)


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
