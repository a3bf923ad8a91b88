"""Reload: a good change takes effect at once; a bad one is rejected whole and the old set stands."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from policy_sso.reload import TenantHolder
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import load_tenant

NOW = 1_767_268_800


@pytest.fixture
def tenant_dir(tmp_path: Path, demo_dir: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


def _portal_decision(holder: TenantHolder) -> str:
    session = Session("s", "u-alice", NOW - 60, NOW - 60, (AuthEvent("pwd", NOW - 60),), {},
                      {"portal": frozenset({"openid"})})
    return holder.tenant.decide(AuthRequest("portal", frozenset({"openid"}), prompt=frozenset({"none"})),
                                session, NOW).outcome


def test_a_good_change_takes_effect(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    assert _portal_decision(holder) == "allow"
    policy = tenant_dir / "portal.policy"
    policy.write_text(policy.read_text().replace('require amr any_of "pwd", "wia", "hwk"',
                                                 'require amr any_of "pwd", "wia", "hwk"\n  require mfa'))
    result = holder.reload()
    assert result.applied
    assert _portal_decision(holder) == "login_required"


def test_a_bad_change_is_rejected_with_every_error_and_the_old_set_stands(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    before = holder.tenant
    (tenant_dir / "portal.policy").write_text(
        'policy "portal" {\n  clients "portal", "payments-web"\n  require amr any_of "pwd", "nope"\n}\n')
    result = holder.reload()
    assert not result.applied
    # payments-web claimed twice (reported on both files), portal-backend left without a policy
    assert {(Path(d.file).name, d.code) for d in result.diagnostics} == {
        ("portal.policy", "E_UNKNOWN_METHOD"), ("portal.policy", "E_DUPLICATE_CLIENT"),
        ("clients.yaml", "E_NO_POLICY")}
    assert holder.tenant is before
    assert _portal_decision(holder) == "allow"


def test_the_issuer_cannot_change_on_reload(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    config = tenant_dir / "tenant.yaml"
    config.write_text(config.read_text().replace("issuer: http://127.0.0.1:8080", "issuer: http://127.0.0.1:9999"))
    result = holder.reload()
    assert not result.applied
    assert [d.code for d in result.diagnostics] == ["E_RELOAD_ISSUER"]


def test_sighup_reloads(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    previous = signal.getsignal(signal.SIGHUP)
    try:
        holder.install_sighup()
        policy = tenant_dir / "portal.policy"
        policy.write_text(policy.read_text().replace('"pwd", "wia", "hwk"', '"hwk"'))
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 5
        while _portal_decision(holder) == "allow" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _portal_decision(holder) == "login_required"
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_an_applied_reload_names_the_clients_whose_policy_changed(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    portal = tenant_dir / "portal.policy"
    portal.write_text(portal.read_text().replace('clients "portal", "portal-backend"', 'clients "portal"'))
    clients = tenant_dir / "clients.yaml"
    clients.write_text(clients.read_text().replace(
        "    first_party: true\n\n  - client_id: payments-web",
        "    first_party: true\n    policy: default\n\n  - client_id: payments-web"))
    result = holder.reload()
    assert result.applied, [str(d) for d in result.diagnostics]
    assert [c.to_json() for c in result.changes] == [
        {"client_id": "portal-backend", "from": "portal", "to": "default"}]
    assert holder.tenant.policy_for("portal-backend").name == "default"


def test_a_loader_failure_is_a_refusal_not_an_exception(tenant_dir: Path, monkeypatch: pytest.MonkeyPatch):
    holder = TenantHolder(load_tenant(tenant_dir))
    before = holder.tenant

    def explode(directory):
        raise RuntimeError("a bug in a loader")

    monkeypatch.setattr("policy_sso.reload.check_tenant", explode)
    result = holder.reload()
    assert not result.applied and [d.code for d in result.diagnostics] == ["E_RELOAD"]
    assert holder.tenant is before


def test_sighup_with_a_broken_set_leaves_the_process_and_the_set_alone(tenant_dir: Path):
    holder = TenantHolder(load_tenant(tenant_dir))
    before = holder.tenant
    previous = signal.getsignal(signal.SIGHUP)
    try:
        holder.install_sighup()
        (tenant_dir / "portal.policy").write_text("")  # caught between truncate and write
        results = []
        holder.listeners.append(results.append)
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
        assert results and not results[0].applied
        assert ("portal.policy", "E_EMPTY_POLICY_FILE") in {(Path(d.file).name, d.code)
                                                           for d in results[0].diagnostics}
        assert holder.tenant is before and _portal_decision(holder) == "allow"
    finally:
        signal.signal(signal.SIGHUP, previous)
