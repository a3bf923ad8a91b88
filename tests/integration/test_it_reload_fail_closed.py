"""Reload fails closed, over real HTTP (issue 12, acceptance 3).

A user signs in at the portal with a password only; the payments client
requires MFA, so its silent sign-in is refused with ``mfa_required``. Then
the tenant directory is broken the ways an editor, a deploy script or an
attacker would break it: a policy file emptied, a policy file removed, a
client half-moved between files, an absolute ``policy_files`` glob. Each
reload, by the admin API (422 with the diagnostics) or by SIGHUP to a
``policy-sso serve`` process (the diagnostics logged, the process alive),
is refused, the running set stays, and payments-web still answers
``mfa_required`` under ``prompt=none``.
"""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from live_op import DEMO, BrowserAgent, FakeClock, LiveOP
from support import free_port

from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant

ADMIN = "admin-token-for-reload-tests-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def _empty(tenant: Path) -> None:
    (tenant / "payments.policy").write_text("")


def _remove(tenant: Path) -> None:
    (tenant / "payments.policy").unlink()


def _half_move(tenant: Path) -> None:
    """payments-web added to the portal's file, not yet removed from the payments file."""
    portal = tenant / "portal.policy"
    portal.write_text(portal.read_text().replace('clients "portal", "portal-backend"',
                                                 'clients "portal", "portal-backend", "payments-web"'))


def _absolute_glob(tenant: Path) -> None:
    config = tenant / "tenant.yaml"
    config.write_text(config.read_text().replace('policy_files: ["*.policy"]',
                                                 'policy_files: ["*.policy", "/tmp/*.policy"]'))


def _yaml_not_loaded(tenant: Path) -> None:
    """The payments policy rewritten in YAML, while policy_files loads only *.policy."""
    shutil.copy(DEMO / "yaml" / "payments.policy.yaml", tenant / "payments.policy.yaml")
    (tenant / "payments.policy").unlink()


def _yaml_named_yaml(tenant: Path) -> None:
    """A YAML policy named ``extra.yaml`` (the YAML form as SPEC §1 names it), not ``*.policy.yaml``."""
    (tenant / "extra.yaml").write_text("policy: p2\nclients: [wiki]\nrequire:\n  amr: {any_of: [pwdd]}\n")


def _dangling_link(tenant: Path) -> None:
    (tenant / "extra.policy").symlink_to(tenant / "gone.policy")


def _tenant_yaml(old: str, new: str) -> Callable[[Path], None]:
    def change(tenant: Path) -> None:
        config = tenant / "tenant.yaml"
        config.write_text(config.read_text().replace(old, new))
    return change


# (id, the breakage, the (file name, code) pairs the refusal must carry)
BREAKAGES = [
    ("emptied-file", _empty, {("payments.policy", "E_EMPTY_POLICY_FILE")}),
    ("removed-file", _remove, {("clients.yaml", "E_NO_POLICY")}),
    # two policies claim one client: reported once, at the later claim (the other place is a note)
    ("half-moved-client", _half_move, {("portal.policy", "E_DUPLICATE_CLIENT")}),
    ("absolute-glob", _absolute_glob, {("tenant.yaml", "E_POLICY_FILES_PATH")}),
    ("yaml-not-in-policy-files", _yaml_not_loaded, {("payments.policy.yaml", "E_POLICY_NOT_LOADED")}),
    ("yaml-policy-named-dot-yaml", _yaml_named_yaml,
     {("extra.yaml", "E_POLICY_NOT_LOADED"), ("extra.yaml", "E_UNKNOWN_METHOD")}),
    ("dangling-link", _dangling_link, {("extra.policy", "E_READ")}),
    # what the server opened at start (the SIGHUP server runs with --store and --state-dir as well)
    ("store-changed", _tenant_yaml("store: sqlite:///var/policy-sso.db", "store: memory://"),
     {("tenant.yaml", "E_RELOAD_STORE")}),
    ("state-dir-changed", _tenant_yaml("state_dir: var", "state_dir: var2"),
     {("tenant.yaml", "E_RELOAD_STATE_DIR")}),
]


def _copy_demo(target: Path, issuer: str) -> Path:
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    config = target / "tenant.yaml"
    config.write_text(config.read_text().replace("issuer: http://127.0.0.1:8080", f"issuer: {issuer}"))
    return target


def _mfa_still_enforced(browser: BrowserAgent) -> None:
    refused = browser.silent("payments-web")
    assert refused.error == "interaction_required", refused.params
    assert "mfa_required" in refused.codes


# --- the admin API --------------------------------------------------------------------------

@pytest.fixture
def tenant_dir(tmp_path: Path) -> Path:
    return tmp_path / "tenant"


@pytest.fixture
def tenant_for(tenant_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], TenantHolder]:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    return lambda url: TenantHolder(load_tenant(_copy_demo(tenant_dir, url)))


def _reload(op: LiveOP) -> requests.Response:
    return requests.post(f"{op.url}/admin/v1/policies/reload", headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=30)


@pytest.mark.parametrize(("breakage", "expected"), [b[1:] for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_the_admin_api_refuses_a_broken_set(op: LiveOP, browser: BrowserAgent, tenant_dir: Path,
                                            breakage, expected) -> None:
    assert browser.sign_in("portal").params.get("code")
    _mfa_still_enforced(browser)
    running = op.tenant
    breakage(tenant_dir)
    response = _reload(op)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["applied"]) == ("invalid_policies", False)
    assert body["error_description"].endswith("the running policies stay in force")
    found = {(Path(d["file"]).name, d["code"]) for d in body["diagnostics"]}
    assert expected <= found, found
    assert all(d["line"] >= 1 and d["col"] >= 1 for d in body["diagnostics"])
    _mfa_still_enforced(browser)
    assert op.tenant is running


def test_a_completed_move_applies_and_names_the_client_that_changed_policy(op: LiveOP, browser: BrowserAgent,
                                                                           tenant_dir: Path) -> None:
    assert browser.sign_in("portal").params.get("code")
    _half_move(tenant_dir)
    payments = tenant_dir / "payments.policy"
    payments.write_text(payments.read_text().replace('clients "payments-web", "payments-api"',
                                                     'clients "payments-api"'))
    response = _reload(op)
    assert response.status_code == 200, response.text
    assert response.json()["governance_changes"] == [
        {"client_id": "payments-web", "from": "payments", "to": "portal"}]
    # the portal's lenient policy now: no second factor asked, only the client's own consent
    assert browser.silent("payments-web").codes == ["consent_missing"]


# --- SIGHUP to `policy-sso serve` -----------------------------------------------------------------

class _Server:
    """A `policy-sso serve` process; its stderr lines collected as they come."""

    def __init__(self, tenant: Path, state: Path, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "policy_sso.cli", "serve", "--config", str(tenant),
             "--state-dir", str(state), "--store", "memory://", "--port", str(port)], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._collect, daemon=True).start()
        ready = self.proc.stdout.readline()
        assert "policy-sso serving" in ready, ready + self.proc.stderr.read()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)

    def refusals_after_sighup(self, expected: set[tuple[str, str]],
                              timeout: float = 60) -> set[tuple[str, str]]:
        """Send SIGHUP; return the (file name, code) pairs of the refusal logged (waits for them)."""
        self.proc.send_signal(signal.SIGHUP)
        found: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        while not expected <= found and time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "the server died on SIGHUP"
                continue
            assert "Traceback" not in line, line
            match = re.search(r"policy reload refused: (\S+?):\d+:\d+: ([EW]_[A-Z_]+):", line)
            if match:
                found.add((Path(match[1]).name, match[2]))
        return found

    def wait_for_line(self, text: str, timeout: float = 60) -> bool:
        """Send SIGHUP; return whether a stderr line holding ``text`` follows in time."""
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.5):
                    return True
            except queue.Empty:
                assert self.proc.poll() is None, "the server died on SIGHUP"
        return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[_Server, Path, BrowserAgent]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tenant = _copy_demo(tmp_path / "tenant", url)
    server = _Server(tenant, tmp_path / "state", port)
    try:
        yield server, tenant, BrowserAgent(LiveOP(url, FakeClock(), None, load_tenant(tenant), None))
    finally:
        server.stop()


def test_sighup_refuses_each_broken_set_and_the_server_keeps_enforcing_mfa(served, tmp_path: Path) -> None:
    server, tenant, browser = served
    pristine = tmp_path / "pristine"
    shutil.copytree(tenant, pristine)
    assert browser.sign_in("portal").params.get("code")
    _mfa_still_enforced(browser)
    for name, breakage, expected in BREAKAGES:
        breakage(tenant)
        found = server.refusals_after_sighup(expected)
        assert expected <= found, (name, found)
        assert requests.get(f"{browser.op.url}/healthz", timeout=10).status_code == 200
        _mfa_still_enforced(browser)
        shutil.rmtree(tenant)  # back to the running set's files before the next breakage
        shutil.copytree(pristine, tenant)
    assert server.proc.poll() is None
    # a completed move applies, and the log names the client that changed policy
    _half_move(tenant)
    payments = tenant / "payments.policy"
    payments.write_text(payments.read_text().replace('clients "payments-web", "payments-api"',
                                                     'clients "payments-api"'))
    assert server.wait_for_line("governing policy changed: payments-web: payments -> portal")
    assert browser.silent("payments-web").codes == ["consent_missing"]
