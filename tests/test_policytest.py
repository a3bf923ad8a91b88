"""``policy-sso test``: the demo tenant's tests, where-tables, failure diffs, coverage and exit codes."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policy_sso.authoring.policytest import CaseError, load_cases, run_file, run_paths
from policy_sso.cli import main
from policy_sso.compile import compile_policy
from policy_sso.model import (
    AcrRequirement,
    AmrRequirement,
    ConsentRequirement,
    MfaRequirement,
    Policy,
    SessionRules,
    canonical_requirements,
)
from policy_sso.parse.yaml_source import load_schema
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import END_REASONS, SessionEnd
from policy_sso.tenant import load_tenant

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["test", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def write(tmp_path: Path, text: str, name: str = "case.test.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"tenant: {DEMO}\n" + text)
    return path


# --- the demo tenant -------------------------------------------------------------------

def test_demo_tests_pass_with_full_coverage(capsys) -> None:
    status, out, _ = run_cli(capsys, str(DEMO), "--min-coverage", "100")
    assert status == 0, out
    assert re.search(r"^\d+ passed, 0 failed$", out, re.M)
    assert "coverage: 24/24 requirement checks and when blocks (100.0%)" in out
    for policy in ("backoffice", "default", "docs", "intranet", "payments", "portal"):
        assert re.search(rf"^  {policy} +\d+/\d+  100\.0%", out, re.M), policy


def test_the_documented_demo_run_is_what_the_command_prints(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    doc = (ROOT / "docs" / "authoring.md").read_text()
    sample = re.search(r"```\n\$ policy-sso test policies/\n(.*?)```", doc, re.S)
    assert sample, "docs/authoring.md shows the output of `policy-sso test policies/`"
    status, out, _ = run_cli(capsys, "policies/")
    assert status == 0
    assert out == sample.group(1)


def test_every_demo_policy_has_a_test_file_with_the_schema_line() -> None:
    files = sorted((DEMO / "tests").glob("*.test.yaml"))
    assert files
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../schemas/policytest.schema.json", path
        assert (path.parent / "../../schemas/policytest.schema.json").resolve().is_file()


BROKEN = """\
cases:
  - name: payments with a password only
    client: payments-web
    session: {subject: u-alice, last_seen: -1m, events: [{method: pwd, at: -1h}],
              consents: {payments-web: [openid, profile]}}
    request: {scope: openid profile, prompt: none}
    expect: {outcome: allow, reasons: [mfa_required, step_up_required]}
"""


REMEDY = ("  remedy   Retry without prompt=none so the user completes a stronger authentication (with "
          "acr_values=urn:policy-sso:loa:2); methods that satisfy the policy: hwk, otp")


def test_a_broken_expectation_fails_with_a_readable_diff(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    path = write(tmp_path, BROKEN)
    status, out, _ = run_cli(capsys, str(path))
    assert status == 1
    expected = f"""\
FAIL {path}:3: payments with a password only
  client payments-web -> policy payments
  outcome  expected: allow
           actual:   interaction_required
  reasons  (- expected, not produced; + produced, not expected)
      mfa_required      policies/payments.policy:10  require mfa
                        required two distinct factors (mfa); observed session amr pwd (factors: knowledge)
    + acr_insufficient  policies/payments.policy:11  require acr "urn:policy-sso:loa:2"
                        required acr at least urn:policy-sso:loa:2; observed session acr urn:policy-sso:loa:1
    - step_up_required
{REMEDY}

0 passed, 1 failed
"""
    assert out.startswith(expected)


def test_json_format(tmp_path, capsys) -> None:
    path = write(tmp_path, BROKEN)
    status, out, _ = run_cli(capsys, str(path), "--format", "json")
    assert status == 1
    data = json.loads(out)
    assert data["summary"] == {"passed": 0, "failed": 1, "files": 1}
    (result,) = data["results"]
    assert result["expected"] == {"outcome": "allow", "reasons": ["mfa_required", "step_up_required"]}
    assert result["actual"]["outcome"] == "interaction_required"
    assert [r["code"] for r in result["actual"]["reasons"]] == ["mfa_required", "acr_insufficient"]
    assert result["actual"]["reasons"][0]["source"].endswith("payments.policy:10")
    payments = next(p for p in data["coverage"]["policies"] if p["policy"] == "payments")
    covered = {i["reason"] for i in payments["items"] if i["covered"]}
    assert covered == {"mfa_required", "acr_insufficient"}


# --- where tables -----------------------------------------------------------------------

WHERE = """\
sessions:
  pwd: {subject: u-alice, events: [{method: pwd, at: -1h}], consents: {portal: [openid]}}
cases:
  - name: "{{client}} with {{method}}"
    client: "{{client}}"
    session: {subject: u-alice, events: [{method: "{{method}}", at: "{{at}}"}],
              consents: {"{{client}}": [openid]}}
    request: {scope: "openid", prompt: none}
    expect: {outcome: "{{outcome}}", reasons: "{{reasons}}"}
    where:
      - {client: portal, method: pwd, at: -1h, outcome: allow, reasons: []}
      - {client: portal, method: otp, at: -1h, outcome: login_required, reasons: [amr_missing]}
  - client: portal
    session: "{{s}}"
    expect: {outcome: allow}
    where:
      - {s: pwd}
"""


def test_where_rows_become_cases(tmp_path) -> None:
    _, cases = load_cases(write(tmp_path, WHERE))
    assert [(c.name, c.line, c.client, c.outcome, c.reasons) for c in cases] == [
        ("portal with pwd", 12, "portal", "allow", ()),
        ("portal with otp", 13, "portal", "login_required", ("amr_missing",)),
        ("case 1 [s=pwd]", 18, "portal", "allow", None),
    ]
    assert cases[1].session["events"] == [{"method": "otp", "at": "-1h"}]
    assert cases[1].session["consents"] == {"portal": ["openid"]}
    assert cases[2].session["subject"] == "u-alice"
    assert cases[1].at == cases[0].at == 1767268800


def test_where_cases_run(tmp_path) -> None:
    run = run_paths([write(tmp_path, WHERE)])
    assert (run.passed, run.failed, run.diagnostics) == (3, 0, [])


CASE = """\
cases:
  - client: portal
    session: {subject: u-alice, events: [{method: pwd}]}
    expect: {outcome: allow}
"""

LOAD_ERRORS = [
    ("unknown-placeholder", CASE.replace("client: portal", 'client: "{{c}}"')
     + "    where: [{x: 1}]\n",
     "6:13: E_TEST: {{c}} is not a column of the where table (columns: x)"),
    ("unused-column", CASE.replace("client: portal", 'client: "{{c}}"')
     + "    where: [{c: portal, typo: 1}]\n",
     "6:25: E_TEST: column 'typo' is not used by the case"),
    ("placeholder-without-where", CASE.replace("client: portal", 'client: "{{c}}"'),
     "3:5: E_TEST: {{c}} is used but the case has no where table"),
    ("list-spliced-into-text", CASE.replace("client: portal", 'client: "app-{{c}}"')
     + "    where: [{c: [a, b]}]\n",
     "6:13: E_TEST: {{c}} is a list and cannot be spliced into text"),
    ("row-gives-wrong-type", CASE.replace("{outcome: allow}", '{outcome: "{{o}}"}')
     + "    where: [{o: 3}]\n",
     "6:13: E_TEST: after filling in the row: 3 is not of type 'string' (at expect/outcome)"),
    ("unknown-named-session", CASE.replace("{subject: u-alice, events: [{method: pwd}]}", "nobody"),
     "4:14: E_TEST: no session named 'nobody' under sessions:"),
    ("unknown-key", CASE.replace("client: portal", "client: portal\n    sesion: null"),
     "4:5: E_UNKNOWN_KEY: unknown key 'sesion'"),
    ("unknown-outcome", CASE.replace("outcome: allow", "outcome: allowed"),
     "5:23: E_VALUE: 'allowed' is not a valid value for 'outcome' (hint: did you mean 'allow'?)"),
    ("unknown-reason", CASE.replace("{outcome: allow}", "{outcome: allow, reasons: [mfa_requried]}"),
     "5:40: E_VALUE: 'mfa_requried' is not a valid value in 'reasons' (hint: did you mean 'mfa_required'?)"),
    ("missing-expect", CASE.replace("    expect: {outcome: allow}\n", ""),
     "3:5: E_MISSING_KEY: item 1 of 'cases' has no 'expect:' (hint: add 'expect:' to it)"),
    ("bad-time", CASE.replace("{method: pwd}", "{method: pwd, at: yesterday}"),
     "4:60: E_TEST: session: events[0].at: 'yesterday' is not epoch seconds, ISO 8601 or an offset"),
    ("not-yaml", "cases: [\n", "E_YAML"),
    ("request-value-misspelt",
     CASE.replace("client: portal", "client: portal\n    request: {scope: openid, prompt: nonee}"),
     "4:38: E_TEST: request: unsupported prompt value 'nonee': the server answers invalid_request "
     "(hint: did you mean 'none'? (a case about a malformed request expects outcome: invalid_request))"),
    ("request-query-malformed", CASE.replace("client: portal", 'client: portal\n    request: "max_age=soon"'),
     "4:14: E_TEST: request: max_age must be a non-negative integer"),
    ("request-value-misspelt-in-row",
     CASE.replace("client: portal", 'client: portal\n    request: {prompt: "{{p}}"}')
     + "    where: [{p: none}, {p: logn}]\n",
     "7:28: E_TEST: request: unsupported prompt value 'logn'"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in LOAD_ERRORS],
                         ids=[i for i, _, _ in LOAD_ERRORS])
def test_malformed_test_files_are_positioned_diagnostics(tmp_path, text, expected) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CaseError) as err:
        load_cases(path)
    # line numbers count the "tenant:" line write() prepends
    assert expected in str(err.value).replace(f"{path}:", ""), str(err.value)


def test_a_case_about_a_malformed_request_runs(tmp_path) -> None:
    """A request the server refuses is a typo only when the case expects another outcome."""
    text = CASE.replace("client: portal", "client: portal\n    request: {prompt: nonee}").replace(
        "outcome: allow", "outcome: invalid_request")
    run = run_paths([write(tmp_path, text)])
    assert (run.passed, run.failed, run.diagnostics) == (1, 0, [])


def test_a_malformed_file_is_reported_without_traceback(tmp_path) -> None:
    path = write(tmp_path, CASE.replace("outcome: allow", "outcome: allowed"))
    proc = subprocess.run([sys.executable, "-m", "policy_sso.cli", "test", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert f"{path}:5:23: E_VALUE: 'allowed' is not a valid value for 'outcome'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "0 passed, 0 failed, 1 error in test files or tenants" in proc.stdout


FIVE_MISTAKES = """\
cases:
  - name: "portal {{why}}"
    client: portal
    session: {subject: u-alice, events: [{method: pwd}]}
    ip: 10.0.0.999
    expect: {outcome: allowed}
    where:
      - {why: signed in, unused: 1}
  - client: hrr
    at: -1 hour
    session: null
    expect: {outcome: login_required}
"""


def test_every_mistake_of_a_file_is_reported_in_one_run(tmp_path, capsys, monkeypatch) -> None:
    """Schema, where table, time, address and client: all at once, in file order, each with a hint."""
    monkeypatch.chdir(ROOT)
    path = write(tmp_path, FIVE_MISTAKES)
    status, out, err = run_cli(capsys, str(path))
    assert status == 1
    headers = [line for line in err.splitlines() if line.startswith(f"{path}:")]
    assert [h.removeprefix(f"{path}:") for h in headers] == [
        "6:9: E_TEST: ip: '10.0.0.999' is not an IP address (hint: e.g. ip: 10.1.2.3 or ip: 2001:db8::1)",
        "7:23: E_VALUE: 'allowed' is not a valid value for 'outcome' (hint: did you mean 'allow'?)",
        "9:26: E_TEST: column 'unused' is not used by the case (hint: use it as {{unused}} or drop it "
        "from the row)",
        "10:13: E_UNKNOWN_CLIENT: client 'hrr' is not registered in policies/clients.yaml (hint: "
        "registered clients: backoffice, docs, intranet-bridge, payments-api, payments-web, portal, "
        "portal-backend, shop, spa, wiki)",
        "11:9: E_TEST: at: '-1 hour' is not epoch seconds, ISO 8601 or an offset like -9h (hint: write "
        "epoch seconds, ISO 8601 (2026-01-01T12:00:00Z) or an offset such as -1h, -90s, -2d)",
    ]
    # the caret spans the value it points at: all of 'hrr', all of '-1 hour'
    assert "  10 |   - client: hrr\n     |             ^^^\n" in err
    assert "  11 |     at: -1 hour\n     |         ^^^^^^^\n" in err
    assert "0 passed, 0 failed, 5 errors in test files or tenants" in out


def test_an_unknown_client_from_a_where_row_is_pointed_at_in_the_row(tmp_path) -> None:
    path = write(tmp_path, CASE.replace("client: portal", 'client: "{{c}}"')
                 + "    where: [{c: portl}, {c: portal, extra: 1}]\n")
    with pytest.raises(CaseError) as err:
        run_file(path)
    text = str(err.value).replace(f"{path}:", "")
    assert "6:17: E_UNKNOWN_CLIENT: client 'portl' is not registered" in text
    assert "(hint: did you mean 'portal'?)" in text
    assert "\n     |                 ^^^^^\n" in text  # under all of portl
    assert "6:37: E_TEST: column 'extra' is not used by the case" in text  # the other row, same run


NO_REASONS = """\
cases:
  - name: payments with a password an hour old
    client: payments-web
    session: {subject: u-alice, last_seen: -1h, events: [{method: pwd, at: -2h}],
              consents: {payments-web: [openid, profile]}}
    request: {scope: openid profile, prompt: none}
    expect: {outcome: allow}
"""


def test_a_failure_without_expected_reasons_shows_the_actual_ones(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    path = write(tmp_path, NO_REASONS)
    status, out, _ = run_cli(capsys, str(path))
    assert status == 1
    assert out.splitlines()[:13] == [
        f"FAIL {path}:3: payments with a password an hour old",
        "  client payments-web -> policy payments",
        "  outcome  expected: allow",
        "           actual:   login_required",
        "  reasons  (actual; the case has no expect.reasons)",
        "      inactivity_timeout  policies/payments.policy:6  inactivity 15m",
        "                          required idle at most 15m; observed idle for 1h",
        "      mfa_required        policies/payments.policy:10  require mfa",
        "                          required two distinct factors (mfa); observed session amr pwd "
        "(factors: knowledge)",
        '      acr_insufficient    policies/payments.policy:11  require acr "urn:policy-sso:loa:2"',
        "                          required acr at least urn:policy-sso:loa:2; observed session acr "
        "urn:policy-sso:loa:1",
        "  remedy   Retry without prompt=none so the user signs in again (with prompt=login, "
        "acr_values=urn:policy-sso:loa:2); methods that satisfy the policy: hwk, otp",
        "",
    ]


def test_a_file_with_only_errors_claims_no_coverage(tmp_path, capsys) -> None:
    path = write(tmp_path, CASE.replace("outcome: allow", "outcome: allowed"))
    status, out, _ = run_cli(capsys, str(path), "--min-coverage", "0")
    assert status == 1
    assert "100.0%" not in out
    assert out.endswith("0 passed, 0 failed, 1 error in test files or tenants\n"
                        "coverage: n/a (no case ran)\n"
                        "coverage n/a does not meet --min-coverage 0%\n")
    _, out, _ = run_cli(capsys, str(path), "--format", "json", "--min-coverage", "0")
    coverage = json.loads(out)["coverage"]
    assert (coverage["percent"], coverage["covered"], coverage["total"]) == (None, 0, 0)


def test_min_coverage_is_not_met_when_no_case_ran(tmp_path) -> None:
    """Only the exit status and message tell: a run with 0 items is n/a, never 100%."""
    run = run_paths([write(tmp_path, CASE.replace("client: portal", "client: hrr"))])
    assert run.results == []
    assert run.coverage.percent is None
    assert [d.code for d in run.diagnostics] == ["E_UNKNOWN_CLIENT"]


# --- coverage ---------------------------------------------------------------------------

ONLY_ALLOWS = """\
cases:
  - client: payments-web
    session: {subject: u-alice, last_seen: -1m, events: [{method: pwd, at: -1h}, {method: otp, at: -1m}],
              consents: {payments-web: [openid, profile, "payments:write"]}}
    request: {scope: "openid profile payments:write", prompt: none}
    expect: {outcome: allow, reasons: []}
"""


def test_passing_checks_are_not_coverage_but_a_held_guard_is(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    path = write(tmp_path, ONLY_ALLOWS)
    status, out, _ = run_cli(capsys, str(path))
    assert status == 0
    assert "coverage: 1/7 requirement checks and when blocks (14.3%)" in out
    assert "  payments  1/7   14.3%  policies/payments.policy" in out
    assert ("      not covered: policies/payments.policy:10  require mfa  (mfa_required never failed)"
            in out)
    assert ('      not covered: policies/payments.policy:6  inactivity 15m  (inactivity_timeout never failed)'
            in out)
    # the when guard held (payments:write requested), so the block is covered
    assert "payments.policy:15  when" not in out
    # the other policies of the tenant: no case of this file targets them, one line (as opa test --coverage
    # counts only the modules it was given)
    assert "portal  " not in out
    assert ("  not counted: backoffice, default, docs, intranet, portal, shop (no case run targets them; "
            "give the tenant directory to count every policy)\n") in out


def test_a_tenant_directory_counts_its_untested_policies(tmp_path, capsys, monkeypatch) -> None:
    """Given a directory, every policy file under it counts, so a policy without tests shows as 0%."""
    shutil.copytree(DEMO, tmp_path / "policies")
    (tmp_path / "policies" / "tests" / "portal.test.yaml").unlink()
    monkeypatch.chdir(tmp_path)
    status, out, _ = run_cli(capsys, "policies", "--min-coverage", "100")
    assert status == 1
    assert "  portal      0/1    0.0%  policies/portal.policy" in out
    assert "not counted" not in out
    status, out, _ = run_cli(capsys, "policies/tests")  # only test files given: the policies they target
    assert status == 0
    assert "portal  " not in out
    assert ("  not counted: default, intranet, portal (no case run targets them; give the tenant directory "
            "to count every policy)") in out


@pytest.mark.parametrize(("minimum", "status"), [("14", 0), ("14.28", 0), ("15", 1), ("100", 1)],
                         ids=["below-met", "exactly-met", "missed", "full-missed"])
def test_min_coverage(tmp_path, capsys, minimum, status) -> None:
    got, out, _ = run_cli(capsys, str(write(tmp_path, ONLY_ALLOWS)), "--min-coverage", minimum)
    assert got == status
    assert ("is below --min-coverage" in out) == bool(status)


# --- exit codes -------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["nowhere/"], "no such file or directory: nowhere/"),
    (["schemas"], "no test files (*.test.yaml) found in schemas"),
    (["policies", "--min-coverage", "120"], "--min-coverage is a percentage between 0 and 100"),
    (["policies", "--min-coverage", "x"], "invalid float value"),
], ids=["missing-path", "no-test-files", "coverage-out-of-range", "coverage-not-a-number"])
def test_usage_errors_exit_2(capsys, monkeypatch, argv, message) -> None:
    monkeypatch.chdir(ROOT)
    status, _, err = run_cli(capsys, *argv)
    assert status == 2
    assert message in err


def test_a_tenant_that_does_not_load_exits_1(tmp_path, capsys) -> None:
    (tmp_path / "tenant.yaml").write_text("issuer: 5\n")
    (tmp_path / "t.test.yaml").write_text(CASE)
    status, out, err = run_cli(capsys, str(tmp_path))
    assert status == 1
    assert "tenant.yaml:1:9: E_TYPE" in err
    assert "0 passed, 0 failed" in out


# --- the schema ---------------------------------------------------------------------------

def test_schema_reason_codes_are_the_codes_checks_produce() -> None:
    """Compile a policy using every kind of check, under a tenant with SSO off, and collect the codes."""
    tenant = load_tenant(ROOT / "tests" / "cases" / "tenant")
    settings = dataclasses.replace(tenant.settings, sso_active=False)
    policy = Policy("all", ("app",), SessionRules(900, 3600),
                    canonical_requirements([AmrRequirement("all_of", ("pwd",)), MfaRequirement(300),
                                            AcrRequirement("loa2"), ConsentRequirement(("openid",))]))
    compiled = compile_policy(policy, settings)
    produced = {g.check.reason for g in compiled.checks}
    produced |= set(compiled.decide(AuthRequest("app"), None, 0).codes)  # no session
    produced |= {compiled.ended(SessionEnd(reason, 0)).codes[0] for reason in END_REASONS}  # ended
    assert set(load_schema("policytest")["$defs"]["reason"]["enum"]) == produced
