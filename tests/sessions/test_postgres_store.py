"""PostgreSQL specifics: a blocked or unreachable server is a bounded StoreUnavailable, the schema
is versioned and migrating twice is a no-op."""

from __future__ import annotations

import time

import pytest
from support import free_port

from policy_sso.errors import StoreError, StoreUnavailable
from policy_sso.sessions import AuthEvent, Session, open_store
from policy_sso.sessions.model import new_session_id
from policy_sso.sessions.store import StoreOptions, session_key

from .conftest import LIFETIME, empty_postgres

NOW = 1_767_268_800


@pytest.fixture
def url(postgres_url):
    empty_postgres(postgres_url)
    return postgres_url


def test_a_row_locked_elsewhere_is_store_unavailable_within_the_timeout(url):
    import psycopg

    store = open_store(url, LIFETIME, StoreOptions(timeout=0.5))
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    with psycopg.connect(url) as other, other.transaction():
        other.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_key(session.id),))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.grant_consent(session.id, "portal", frozenset({"openid"}), NOW + 1)
        assert time.monotonic() - started < 5
    # the pool's connection serves the next call as if nothing had happened
    assert store.grant_consent(session.id, "portal", frozenset({"openid"}), NOW + 1) is not None
    store.ping()
    store.close()


def test_an_unreachable_server_is_a_store_error_naming_it():
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot use PostgreSQL at 127\.0\.0\.1"):
        open_store(f"postgresql://psso@127.0.0.1:{free_port()}/psso", LIFETIME, StoreOptions(timeout=0.5))
    assert time.monotonic() - started < 15


def test_the_schema_is_versioned_and_opening_again_migrates_nothing(url):
    import psycopg

    from policy_sso.sessions.postgres import SCHEMA_VERSION

    open_store(url, LIFETIME).close()
    open_store(url, LIFETIME).close()
    with psycopg.connect(url) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM policy_sso_schema ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))



def test_a_server_that_stops_answering_is_store_unavailable_within_the_deadline(url):
    """SIGSTOP on the store's server processes: no statement_timeout ever comes back from a hung server,
    so the store's own deadline ends the call (SPEC §7); once the server answers again, so does the store."""
    import os
    import signal

    import psycopg

    store = open_store(url, LIFETIME, StoreOptions(timeout=0.5))
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    with psycopg.connect(url, autocommit=True) as admin:
        hung = [pid for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'")]
        assert hung  # the store's pooled connection(s)
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.get_session(session.id, NOW + 1)
            assert time.monotonic() - started < store.deadline + 1.0
        finally:
            for pid in hung:
                os.kill(pid, signal.SIGCONT)
    # a new connection serves the next call
    assert store.get_session(session.id, NOW + 1) is not None
    store.ping()
    store.close()
