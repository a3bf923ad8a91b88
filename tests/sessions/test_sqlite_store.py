"""What only the SQLite store has: its file, its state directory and its journal mode."""

from __future__ import annotations

import sqlite3

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
