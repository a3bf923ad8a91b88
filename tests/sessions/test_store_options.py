"""How a store is run: tenant.yaml's store_timeout and session.max_per_user, and timeouts in URLs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policy_sso.sessions import open_store
from policy_sso.sessions.store import DEFAULT_MAX_SESSIONS_PER_USER, DEFAULT_TIMEOUT, StoreOptions
from policy_sso.tenant import check_tenant

from .conftest import LIFETIME

DEMO = Path(__file__).resolve().parents[2] / "policies"


def tenant_with(tmp_path: Path, extra: str, session_extra: str = "") -> Path:
    directory = tmp_path / "tenant"
    shutil.copytree(DEMO, directory, ignore=shutil.ignore_patterns("tests"))
    config = directory / "tenant.yaml"
    text = config.read_text().replace("session:\n", f"session:\n{session_extra}", 1)
    config.write_text(text + extra)
    return directory


def test_the_defaults_bound_a_call_to_a_second_and_a_user_to_a_hundred_sessions(tmp_path):
    tenant, diagnostics = check_tenant(tenant_with(tmp_path, ""))
    assert tenant is not None, diagnostics
    assert tenant.settings.store_options == StoreOptions(DEFAULT_TIMEOUT, DEFAULT_MAX_SESSIONS_PER_USER)
    assert (DEFAULT_TIMEOUT, DEFAULT_MAX_SESSIONS_PER_USER) == (1.0, 100)


def test_tenant_yaml_sets_both(tmp_path):
    tenant, diagnostics = check_tenant(tenant_with(tmp_path, "store_timeout: 0.25\n", "  max_per_user: 7\n"))
    assert tenant is not None, diagnostics
    assert tenant.settings.store_options == StoreOptions(0.25, 7)


@pytest.mark.parametrize(("extra", "session_extra"), [
    ("store_timeout: 0\n", ""), ("store_timeout: 31\n", ""), ('store_timeout: "1s"\n', ""),
    ("", "  max_per_user: 0\n"), ("", "  max_per_user: 1.5\n"),
], ids=["timeout_zero", "timeout_over_30s", "timeout_as_text", "no_session_allowed", "fractional_bound"])
def test_out_of_range_settings_are_errors(tmp_path, extra, session_extra):
    tenant, diagnostics = check_tenant(tenant_with(tmp_path, extra, session_extra))
    assert tenant is None
    assert any(d.severity == "error" and "tenant.yaml" in d.file for d in diagnostics), diagnostics


def test_a_timeout_in_a_redis_url_wins_over_the_settings(redis_url):
    store = open_store(f"{redis_url}?socket_timeout=0.25", LIFETIME, StoreOptions(timeout=0.75))
    kwargs = store.redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25 and kwargs["socket_connect_timeout"] == 0.75
    store.close()


def test_a_timeout_in_a_sqlite_url_wins_over_the_settings(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}?timeout=0.25"
    store = open_store(url, LIFETIME, StoreOptions(timeout=0.75))
    assert store.timeout == 0.25 and store.path == tmp_path / "store.db"
    assert store._db().execute("PRAGMA busy_timeout").fetchone() == (250,)
    store.close()
