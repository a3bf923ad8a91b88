"""Instances on one store converge on a reload made at one of them (SPEC §7), and nothing reloads twice."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy_sso.reload import ReloadResult, TenantHolder
from policy_sso.sessions import SessionLifetime, open_store
from policy_sso.tenant import load_tenant
from server.converge import COUNTER, FOREVER, ReloadFollower

ROOT = Path(__file__).resolve().parents[2]
NEW_SCOPE = "reports:read"


@pytest.fixture
def tenant_dir(tmp_path: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(ROOT / "policies", target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


@pytest.fixture
def instances(tenant_dir: Path, tmp_path: Path) -> Iterator[tuple[TenantHolder, TenantHolder, list, list]]:
    """Two instances' holders on one tenant directory and one SQLite file, following each other."""
    store = open_store(f"sqlite:///{tmp_path / 'shared.db'}", SessionLifetime())
    stop = threading.Event()
    holders, applied = [], []
    for _ in range(2):
        holder = TenantHolder(load_tenant(tenant_dir))
        seen: list[ReloadResult] = []
        holder.listeners.append(lambda result, seen=seen: seen.append(result) if result.applied else None)
        ReloadFollower(store, holder, poll_seconds=0.05).start(stop)
        holders.append(holder)
        applied.append(seen)
    yield holders[0], holders[1], applied, [store]
    stop.set()
    time.sleep(0.1)
    store.close()


def _add_scope(tenant_dir: Path) -> None:
    clients = tenant_dir / "clients.yaml"
    old = "scopes: [openid, profile, email, offline_access]\n"  # the portal's, first in the file
    text = clients.read_text()
    assert old in text
    clients.write_text(text.replace(old, old.replace("]", f', "{NEW_SCOPE}"]'), 1))


def _until(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_a_reload_at_one_instance_reaches_the_other_once(instances, tenant_dir: Path) -> None:
    a, b, applied, (store,) = instances
    time.sleep(0.2)  # both have looked at the count once
    _add_scope(tenant_dir)
    assert NEW_SCOPE not in b.tenant.clients["portal"].scopes  # the edit alone changes nothing
    assert a.reload().applied
    assert _until(lambda: NEW_SCOPE in b.tenant.clients["portal"].scopes)
    time.sleep(0.5)  # ten more looks each: neither reloads again, and b's reload told no one
    assert [len(seen) for seen in applied] == [1, 1]
    assert store.hit(COUNTER, FOREVER, 0, 0)[0] == 1


def test_a_reload_elsewhere_with_the_files_unchanged_reloads_nothing(instances) -> None:
    a, _, applied, _ = instances
    time.sleep(0.2)
    assert a.reload().applied  # nothing changed on disk since b loaded it (the workers of one server)
    time.sleep(0.5)
    assert [len(seen) for seen in applied] == [1, 0]


def test_a_set_the_other_instance_finds_broken_is_refused_there_and_its_policies_stay(
        instances, tenant_dir: Path) -> None:
    a, b, _, _ = instances
    time.sleep(0.2)
    _add_scope(tenant_dir)
    assert a.reload().applied
    assert _until(lambda: NEW_SCOPE in b.tenant.clients["portal"].scopes)
    running = b.tenant
    (tenant_dir / "portal.policy").write_text('policy "portal" { clients "nobody-by-that-name" }\n')
    assert not a.reload().applied  # refused at a: nothing is counted, b is not asked
    time.sleep(0.3)
    assert b.tenant is running
