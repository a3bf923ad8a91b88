"""What only the SQLite store has: its file, its state directory and its journal mode."""

from __future__ import annotations

import sqlite3
import time

import pytest

from policy_sso.errors import StoreError, StoreUnavailable
from policy_sso.sessions import AuthEvent, Session, open_store
from policy_sso.sessions.model import new_session_id

from .conftest import LIFETIME

NOW = 1_767_268_800


def test_the_store_creates_its_state_directory(tmp_path):
    path = tmp_path / "var" / "state" / "sessions.db"
    store = open_store(f"sqlite:///{path}", LIFETIME)
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    store.close()
    reopened = open_store(f"sqlite:///{path}", LIFETIME)
    assert reopened.get_session(session.id, NOW).subject == "u-alice"
    reopened.close()


def test_the_file_is_in_wal_mode(tmp_path):
    # WAL is what lets a reader in one process go on while another process writes
    path = tmp_path / "store.db"
    open_store(f"sqlite:///{path}", LIFETIME).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_locked_file_is_a_store_fault_answered_within_the_timeout(tmp_path):
    # issue 14: a backup (or any other connection) holding the write lock; busy_timeout was 30 s
    path = tmp_path / "store.db"
    store = open_store(f"sqlite:///{path}?timeout=0.3", LIFETIME)
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as fault:
            store.create_session(Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),)))
        waited = time.monotonic() - started
        assert 0.25 <= waited < 0.3 + 2.0, waited  # the timeout, plus a loaded machine's margin
        assert "locked" in fault.value.reason
        assert isinstance(fault.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreUnavailable):
            store.ping()
        assert store.get_session(session.id, NOW) is not None  # WAL: reads go on meanwhile
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # the failed transaction was rolled back: the same thread's connection works at once
    after = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    assert store.create_session(after) == []
    store.ping()
    store.close()


def test_the_timeout_in_the_url_must_be_seconds(tmp_path):
    with pytest.raises(StoreError, match="timeout"):
        open_store(f"sqlite:///{tmp_path / 'store.db'}?timeout=nan", LIFETIME)


def _open_store(path, barrier) -> str:
    barrier.wait()
    try:
        open_store(f"sqlite:///{path}", LIFETIME).close()
    except Exception as err:  # reported to the test, not raised in the child
        return repr(err)
    return "ok"


def test_servers_starting_together_all_open_a_new_store_file(tmp_path):
    # two `serve` processes on one fresh state directory: turning a new file to WAL is not waited for
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(3) as pool:
        for trial in range(20):
            barrier = manager.Barrier(3)
            path = tmp_path / f"t{trial}" / "policy-sso.db"
            assert pool.starmap(_open_store, [(path, barrier)] * 3) == ["ok"] * 3
