"""Across processes: single use under a race, how a code is redeemed once (SQLite, Redis, PostgreSQL);
durability across SIGKILL (SQLite, PostgreSQL)."""

from __future__ import annotations

import itertools
import multiprocessing
import signal
import subprocess
import sys
import time

import pytest

from policy_sso.sessions import SessionLifetime, open_store

from .conftest import BACKENDS, LIFETIME, store_url

NOW = 1_767_268_800

WRITER = """
import sys
from policy_sso.sessions import AuthEvent, SessionLifetime, open_store
from policy_sso.sessions.model import new_session
store = open_store(sys.argv[1], SessionLifetime())
now = int(sys.argv[2])
i = 0
while True:
    session = new_session(f"u-{i}", (AuthEvent("pwd", now), AuthEvent("otp", now)), now)
    store.create_session(session)
    print(session.id, session.subject, flush=True)
    i += 1
"""


def _use(url: str, key: str, barrier, results) -> None:
    store = open_store(url, LIFETIME)
    barrier.wait()
    results.put(store.use_jti("code", key, NOW + 60, NOW))
    store.close()


# not redis_cluster: the same one-key script as on one server, and 400 cluster clients (each reads
# the slot map and the command table) would cost a minute of the suite for nothing more
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in ("memory", "redis_cluster")])
def test_two_processes_use_one_identifier_exactly_one_wins(backend, tmp_path, request):
    url = store_url(backend, tmp_path, request)
    open_store(url, LIFETIME).close()  # the schema exists before the race
    context = multiprocessing.get_context("fork")
    for attempt in range(200):
        key = f"code-{attempt}"
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_use, args=(url, key, barrier, results)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert sorted(results.get(timeout=5) for _ in range(2)) == [False, True], attempt


@pytest.mark.parametrize("backend", [b for b in ("sqlite", "postgres") if b in BACKENDS])
def test_sessions_survive_sigkill_mid_stream(backend, tmp_path, request):
    # an acknowledged session (create_session returned) is committed: on SQLite in its WAL, on
    # PostgreSQL in the server, whatever happens to the process that wrote it
    url = store_url(backend, tmp_path, request)
    open_store(url, SessionLifetime()).close()  # schema exists before the writer starts
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(NOW)], stdout=subprocess.PIPE,
                              text=True)
    written: list[tuple[str, str]] = []
    deadline = time.monotonic() + 20
    while len(written) < 300 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        if line:
            session_id, subject = line.split()
            written.append((session_id, subject))
    # let the writer run on unread for a moment, so the kill lands wherever its loop happens
    # to be, not just after the line this reader took
    time.sleep(0.02)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    # lines still in the pipe were printed after their create_session returned too: they are
    # the writes closest to the kill, the ones a late or lost commit would show up in
    for line in writer.stdout.read().split("\n")[:-1]:  # the last piece: "" or a torn line
        session_id, subject = line.split()
        written.append((session_id, subject))
    assert len(written) >= 300
    store = open_store(url, SessionLifetime())
    for session_id, subject in written:
        session = store.get_session(session_id, NOW + 1)
        assert session is not None, session_id
        assert session.subject == subject and session.amr == ("otp", "pwd", "mfa")
    # sessions written after the last line read, up to the one in flight when the signal
    # landed: each is whole or absent, never torn (subjects are numbered in write order)
    for i in itertools.count(len(written)):
        later = store.sessions_of(f"u-{i}", NOW + 1)
        if not later:
            break
        assert [(s.amr, s.created_at) for s in later] == [(("otp", "pwd", "mfa"), NOW)]
    store.close()
