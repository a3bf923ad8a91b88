"""Issue 13 below HTTP: the tenant settings (sso.active, acr_values.requested) and explain.

Tenants are the decision-suite tenants in tests/cases/ (tenant, tenant-sso-off,
tenant-voluntary); explain runs on session fixtures written in tmp_path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from policy_sso.cli import main
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import load_tenant

CASES = Path(__file__).resolve().parent / "cases"
AT = 1_767_268_800


def session(created_for: str | None, methods: tuple[str, ...] = ("pwd",)) -> Session:
    return Session("s", "u1", AT - 3600, AT - 60, tuple(AuthEvent(m, AT - 3600) for m in methods),
                   consents={"open-app": frozenset({"openid"})}, created_for=created_for)


def test_sso_is_on_and_acr_values_enforced_by_default() -> None:
    settings = load_tenant(CASES / "tenant").settings
    assert (settings.sso_active, settings.acr_values_requested) == (True, "enforced")


def test_a_tenant_with_sso_off_serves_each_client_its_own_sessions() -> None:
    tenant = load_tenant(CASES / "tenant-sso-off")
    assert tenant.settings.sso_active is False
    request = AuthRequest("open-app", frozenset({"openid"}), prompt=frozenset({"none"}))
    assert tenant.decide(request, session("open-app"), AT).allowed
    refused = tenant.decide(request, session("strict-app"), AT)
    assert refused.codes == ("sso_disabled",)
    reason = refused.reasons[0]
    assert reason.source.endswith("tenant-sso-off/tenant.yaml:4")  # the sso.active line
    assert reason.observed == "session created at strict-app"
    assert tenant.decide(request, None, AT).codes == ("no_session",)


def test_a_tenant_may_make_requested_acr_values_voluntary() -> None:
    voluntary, enforced = load_tenant(CASES / "tenant-voluntary"), load_tenant(CASES / "tenant")
    request = AuthRequest("open-app", frozenset({"openid"}), acr_values=("loa2",), prompt=frozenset({"none"}))
    assert voluntary.settings.acr_values_requested == "voluntary"
    assert voluntary.decide(request, session(None), AT).allowed
    refused = enforced.decide(request, session(None), AT)
    assert refused.codes == ("acr_insufficient",)
    assert refused.reasons[0].observed == "requested loa2, session acr loa1"


def test_an_unknown_acr_values_mode_is_a_schema_error(tmp_path: Path) -> None:
    directory = tmp_path / "tenant"
    shutil.copytree(CASES / "tenant-voluntary", directory)
    text = (directory / "tenant.yaml").read_text().replace("requested: voluntary", "requested: sometimes")
    (directory / "tenant.yaml").write_text(text)
    with pytest.raises(Exception) as raised:
        load_tenant(directory)
    assert "sometimes" in str(getattr(raised.value, "diagnostics", raised.value))


def explain(tmp_path: Path, capsys, tenant: str, fixture: dict, request: str, client: str = "open-app"):
    path = tmp_path / "session.json"
    path.write_text(json.dumps(fixture))
    code = main(["explain", "--config", str(CASES / tenant), "--client", client, "--session", str(path),
                 "--request", request, "--at", str(AT), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


FIXTURE = {"subject": "u1", "events": [{"method": "pwd", "at": "-1h"}], "last_seen": "-1m",
           "consents": {"open-app": ["openid"]}}


@pytest.mark.parametrize(("tenant", "created_for", "codes"), [
    ("tenant-sso-off", "open-app", []),
    ("tenant-sso-off", "strict-app", ["sso_disabled"]),
    ("tenant", "strict-app", []),
], ids=["sso-off-own-session", "sso-off-other-client-sso_disabled", "sso-on-any-client"])
def test_explain_says_sso_disabled_only_for_another_clients_session(tmp_path, capsys, tenant, created_for,
                                                                      codes) -> None:
    _, out = explain(tmp_path, capsys, tenant, {**FIXTURE, "created_for": created_for}, "prompt=none")
    assert [r["code"] for r in out["reasons"]] == codes


@pytest.mark.parametrize(("tenant", "outcome", "mode"), [
    ("tenant", "login_required", "enforced"), ("tenant-voluntary", "allow", "voluntary"),
], ids=["enforced-acr_insufficient", "voluntary-allow"])
def test_explain_understands_both_acr_values_modes(tmp_path, capsys, tenant, outcome, mode) -> None:
    _, out = explain(tmp_path, capsys, tenant, FIXTURE, "prompt=none&acr_values=loa2")
    assert (out["outcome"], out["acr_values"]) == (outcome, {"requested": mode})


def test_explain_reports_why_a_session_ended(tmp_path, capsys) -> None:
    idle = {"ended": {"reason": "inactivity_timeout", "at": "-5m", "limit": "1d"}}
    code, out = explain(tmp_path, capsys, "tenant", idle, "prompt=none")
    assert code == 1
    (reason,) = out["reasons"]
    assert reason["code"] == "inactivity_timeout"
    assert reason["required"] == "idle at most 1d"
    assert reason["observed"] == "session ended at 2026-01-01T11:55:00Z after reaching the 1d limit"
    assert reason["source"].endswith("tenant/tenant.yaml:6")  # session.inactivity
