"""``policy-sso explain``: the decision, every reason at its policy line, the remedy; exit 0/1/2.

Sessions are fixture files (policy_sso/sessions/fixture.py) written in
tmp_path, their times relative to the evaluation time, so the output is exact
whatever the clock says. The demo tenant in ``policies/`` is the default
``--config``; line numbers below are those of ``policies/payments.policy``.
(``validate`` has its own suite: tests/test_validate_broken.py.)
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policy_sso.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAYMENTS = ROOT / "policies" / "payments.policy"
WRITE_SILENTLY = "scope=openid%20payments:write&prompt=none"
AT = "1767268800"  # 2026-01-01T12:00:00Z



def _alice(events: dict[str, str], scopes: list[str]) -> dict:
    """Return a fixture: alice's events ``{method: time}``, seen 1m ago, scopes granted to payments-web."""
    return {"subject": "u-alice", "events": [{"method": m, "at": at} for m, at in events.items()],
            "last_seen": "-1m", "consents": {"payments-web": scopes}}


PWD_ONLY = _alice({"pwd": "-2h"}, ["openid", "profile"])
STALE_MFA = _alice({"pwd": "-1h", "otp": "-30m"}, ["openid", "profile", "payments:write"])
FRESH_MFA = _alice({"pwd": "-20m", "otp": "-4m"}, ["openid", "profile", "payments:write"])


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # --config defaults to ./policies; sources print as policies/…


def _fixture(tmp_path: Path, data: object, name: str = "s.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["explain", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _policy_line(number: int) -> str:
    return PAYMENTS.read_text().splitlines()[number - 1].strip()


# --- the decision in text -----------------------------------------------------------------

def test_silent_payment_with_one_factor_explains_every_reason(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, PWD_ONLY)
    status, out, err = _explain(capsys, "--client", "payments-web", "--session", session,
                                "--request", WRITE_SILENTLY)
    assert status == 1
    assert err == ""
    assert out == """\
client payments-web -> policy payments (policies/payments.policy:2)
outcome: interaction_required
reasons:
  mfa_required      policies/payments.policy:10
                    required: two distinct factors (mfa)
                    observed: session amr pwd (factors: knowledge)
  acr_insufficient  policies/payments.policy:11
                    required: acr at least urn:policy-sso:loa:2
                    observed: session acr urn:policy-sso:loa:1
  consent_missing   policies/payments.policy:2
                    required: every requested scope granted
                    observed: granted openid, profile; missing payments:write
remedy: Retry without prompt=none so the user completes a stronger authentication \
(with acr_values=urn:policy-sso:loa:2, prompt=consent); methods that satisfy the policy: hwk, otp
under prompt=none the client's redirect_uri receives: \
error=interaction_required&error_description=mfa_required%20acr_insufficient%20consent_missing
"""
    # the lines named are the statements behind each reason
    assert _policy_line(2) == 'policy "payments" {'
    assert _policy_line(10) == "require mfa"
    assert _policy_line(11) == 'require acr "urn:policy-sso:loa:2"'


def test_stale_second_factor_points_at_the_step_up_line(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, STALE_MFA)
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", session,
                              "--request", WRITE_SILENTLY)
    assert status == 1
    assert out.splitlines()[1:6] == [
        "outcome: interaction_required",
        "reasons:",
        "  step_up_required  policies/payments.policy:16",
        "                    required: a second factor within 5m",
        "                    observed: last second factor 30m ago",
    ]
    assert _policy_line(16) == "require mfa within 5m"
    assert "(with acr_values=urn:policy-sso:loa:2, max_age=300)" in out


def test_idle_session_points_at_the_inactivity_line(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, {**FRESH_MFA, "last_seen": "-16m"})
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", session,
                              "--request", WRITE_SILENTLY)
    assert status == 1
    assert out.splitlines()[1:6] == [
        "outcome: login_required",
        "reasons:",
        "  inactivity_timeout  policies/payments.policy:6",
        "                      required: idle at most 15m",
        "                      observed: idle for 16m",
    ]
    assert _policy_line(6) == "inactivity 15m"


def test_allowed_session_exits_0(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, FRESH_MFA)
    status, out, err = _explain(capsys, "--client", "payments-web", "--session", session,
                                "--request", WRITE_SILENTLY)
    assert (status, err) == (0, "")
    assert out == "client payments-web -> policy payments (policies/payments.policy:2)\noutcome: allow\n"


def test_no_session_is_login_required_at_the_policy_line(tmp_path: Path, capsys) -> None:
    """``null`` is no session."""
    session = _fixture(tmp_path, None)
    status, out, _ = _explain(capsys, "--client", "wiki", "--session", session, "--request", "prompt=none")
    assert status == 1
    assert out.splitlines()[:4] == [
        "client wiki -> policy default (policies/default.policy:3)",
        "outcome: login_required",
        "reasons:",
        "  no_session  policies/default.policy:3",
    ]


@pytest.mark.parametrize(("client", "hint"), [
    ("payment-web", "did you mean 'payments-web' or 'payments-api'?"),
    ("someone-else", "registered clients: backoffice, docs, intranet-bridge, payments-api, payments-web, "
                     "portal, portal-backend, shop, spa, wiki"),
], ids=["typo", "unrelated"])
def test_an_unregistered_client_is_refused_never_given_the_default_policy(tmp_path: Path, capsys,
                                                                          client: str, hint: str) -> None:
    session = _fixture(tmp_path, None)
    status, out, err = _explain(capsys, "--client", client, "--session", session)
    assert (status, out) == (2, "")
    assert err == (f"policy-sso explain: client {client!r} is not registered in policies/clients.yaml "
                   f"({hint})\n")


def test_yaml_fixture_with_a_session_key(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("session:\n"
                    "  subject: u-alice\n"
                    "  events: [{method: pwd, at: -20m}, {method: otp, at: -4m}]\n"
                    "  last_seen: -1m\n"
                    "  consents: {payments-web: [openid, profile]}\n")
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", str(path))
    assert status == 0
    assert "outcome: allow" in out


@pytest.mark.parametrize("at", [AT, "2026-01-01T12:00:00Z", "2026-01-01T13:00:00+01:00"],
                         ids=["epoch", "iso-utc", "iso-offset"])
def test_at_takes_epoch_seconds_or_iso_8601(at: str, tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, FRESH_MFA)
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", session, "--at", at,
                              "--format", "json")
    assert status == 0
    assert json.loads(out)["at"] == int(AT)


def test_absolute_session_times_against_at(tmp_path: Path, capsys) -> None:
    """Fixture times in ISO 8601 and ``--at`` together: auth 9h before ``--at`` exceeds max_auth_age 8h."""
    nine_hours_before = "2026-01-01T03:00:00Z"
    session = _fixture(tmp_path, {**_alice({"pwd": nine_hours_before, "otp": nine_hours_before},
                                           ["openid", "profile"]),
                                  "last_seen": "2026-01-01T11:59:00Z"})
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", session, "--at", AT)
    assert status == 1
    assert "  max_age_exceeded  policies/payments.policy:7" in out.splitlines()
    assert _policy_line(7) == "max_auth_age 8h"


# --- the decision in JSON -----------------------------------------------------------------

def test_json_shape(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, PWD_ONLY)
    before = int(time.time())
    status, out, err = _explain(capsys, "--client", "payments-web", "--session", session,
                                "--request", WRITE_SILENTLY, "--format", "json")
    assert (status, err) == (1, "")
    decision = json.loads(out)
    assert list(decision) == ["client_id", "at", "outcome", "policy", "reasons", "remedy"]
    assert before <= decision["at"] <= int(time.time())
    assert decision["client_id"] == "payments-web"
    assert decision["outcome"] == "interaction_required"
    assert decision["policy"] == "payments"
    assert [(r["code"], r["source"]) for r in decision["reasons"]] == [
        ("mfa_required", "policies/payments.policy:10"),
        ("acr_insufficient", "policies/payments.policy:11"),
        ("consent_missing", "policies/payments.policy:2"),
    ]
    for reason in decision["reasons"]:
        assert list(reason) == ["code", "message", "required", "observed", "source"]
        assert reason["message"].endswith(f"required {reason['required']}; {reason['observed']}")
    assert decision["reasons"][0]["observed"] == "session amr pwd (factors: knowledge)"
    assert decision["remedy"] == {
        "action": "step_up",
        "message": "Retry without prompt=none so the user completes a stronger authentication "
                   "(with acr_values=urn:policy-sso:loa:2, prompt=consent); "
                   "methods that satisfy the policy: hwk, otp",
        "params": {"acr_values": "urn:policy-sso:loa:2", "prompt": "consent"},
        "methods": ["hwk", "otp"],
    }


def test_json_of_an_allowed_session(tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, FRESH_MFA)
    status, out, _ = _explain(capsys, "--client", "payments-web", "--session", session, "--at", AT,
                              "--format", "json")
    assert status == 0
    assert json.loads(out) == {"client_id": "payments-web", "at": int(AT), "outcome": "allow",
                               "policy": "payments", "reasons": [], "remedy": None}


# --- exit codes -----------------------------------------------------------------------------

def test_usage_error_missing_client(tmp_path: Path, capsys) -> None:
    status, out, err = _explain(capsys, "--session", _fixture(tmp_path, FRESH_MFA))
    assert (status, out) == (2, "")
    assert "the following arguments are required: --client" in err


def test_usage_error_missing_session(capsys) -> None:
    status, _, err = _explain(capsys, "--client", "portal")
    assert status == 2
    assert "the following arguments are required: --session" in err


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read session file {path}: No such file or directory"),
    (b"\xff\xfe{}", "session file {path} is not UTF-8 text: invalid start byte"),
    (b'{"events": [{"method": "pwd"}]}', "session file {path}: session fixture needs a subject"),
    (b'{"subject": "u", "events": [{"method": "pwd"}], "consents": {"portal": 5}}',
     "session file {path}: consents.portal: expected a list of scopes or scope -> granted time"),
    (b"subject: u\nevents: [{method: pwd, at: .inf}]\n",
     "session file {path}: events[0].at: inf is not a time"),
    (b"[1, 2", "session file {path} is not valid JSON/YAML: "),
], ids=["missing-file", "not-utf8", "no-subject", "consents-not-a-list", "infinite-time", "bad-yaml"])
def test_usage_error_unreadable_session(content: bytes | None, message: str, tmp_path: Path,
                                        capsys) -> None:
    path = tmp_path / "session.json"
    if content is not None:
        path.write_bytes(content)
    status, out, err = _explain(capsys, "--client", "portal", "--session", str(path))
    assert (status, out) == (2, "")
    assert err.startswith("policy-sso explain: " + message.format(path=path))
    assert "Traceback" not in err


def test_usage_error_session_is_a_directory(tmp_path: Path, capsys) -> None:
    status, _, err = _explain(capsys, "--client", "portal", "--session", str(tmp_path))
    assert status == 2
    assert err == f"policy-sso explain: cannot read session file {tmp_path}: Is a directory\n"


@pytest.mark.parametrize("argv", [["--at", "yesterday"], ["--format", "xml"]], ids=["bad-at", "bad-format"])
def test_usage_error_bad_option(argv: list[str], tmp_path: Path, capsys) -> None:
    session = _fixture(tmp_path, FRESH_MFA)
    status, out, err = _explain(capsys, "--client", "portal", "--session", session, *argv)
    assert (status, out) == (2, "")
    assert err


def test_invalid_request_is_a_finding(tmp_path: Path, capsys) -> None:
    """prompt=none with another value is the invalid_request outcome (OIDC Core §3.1.2.1)."""
    status, out, err = _explain(capsys, "--client", "portal", "--session", _fixture(tmp_path, FRESH_MFA),
                                "--request", "prompt=none%20login")
    assert (status, out) == (1, "")
    assert err == ("invalid request: invalid_request: "
                   "prompt=none cannot be combined with other prompt values\n")


def test_broken_tenant_prints_its_diagnostics(tmp_path: Path, capsys) -> None:
    status, out, err = _explain(capsys, "--client", "spa", "--session", _fixture(tmp_path, FRESH_MFA),
                                "--config", "tests/broken/tenant-config")
    assert (status, out) == (1, "")
    assert "tests/broken/tenant-config/tenant.yaml:15:1: E_UNKNOWN_POLICY: default_policy 'standard' " \
           "is not defined\n" in err


def test_real_subprocess(tmp_path: Path) -> None:
    session = _fixture(tmp_path, STALE_MFA)
    run = subprocess.run(
        [sys.executable, "-m", "policy_sso.cli", "explain", "--client", "payments-web", "--session", session,
         "--request", WRITE_SILENTLY, "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert run.stderr == ""
    decision = json.loads(run.stdout)
    assert [(r["code"], r["source"]) for r in decision["reasons"]] == [
        ("step_up_required", "policies/payments.policy:16")]


def test_the_documented_example_is_a_real_run(tmp_path: Path, capsys) -> None:
    """docs/decision-json.md shows a session file and the JSON explain prints for it: still true."""
    doc = (ROOT / "docs" / "decision-json.md").read_text()
    console = re.search(r"```console\n\$ cat s.json\n(.*?)\n\$ policy-sso explain (.*?)\n```", doc, re.DOTALL)
    shown = json.loads(re.search(r"```json\n(.*?)```", doc, re.DOTALL)[1])
    session = tmp_path / "s.json"
    session.write_text(console[1])
    argv = shlex.split(console[2].replace("\\\n", " "))
    status, out, _ = _explain(capsys, *[str(session) if a == "s.json" else a for a in argv])
    assert status == 1
    assert json.loads(out) == shown
    assert out.startswith('{\n  "client_id": "payments-web",\n  "at": 1767268800,')


def test_the_readme_example_prints_what_the_readme_shows(tmp_path: Path, monkeypatch, capsys) -> None:
    # the first example a new user runs: its session file, its command and its output, as printed there
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```console\n\$ cat s\.json[^\n]*\n(.*?)\n\$ (policy-sso explain [^\n]*)\n(.*?)```",
                      readme, re.DOTALL)
    assert block is not None, "README.md lost its explain example"
    fixture, command, shown = block.groups()
    (tmp_path / "s.json").write_text(fixture)
    monkeypatch.chdir(tmp_path)
    args = [*shlex.split(command)[1:], "--config", str(ROOT / "policies")]
    assert main(args) == 1  # a refused decision
    printed = capsys.readouterr().out.replace(str(ROOT) + "/", "")
    assert printed == shown


def test_session_null_is_a_browser_with_no_session(capsys) -> None:
    # explain --help says "or null": the word itself, no file needed
    assert main(["explain", "--client", "portal", "--session", "null", "--at", AT]) == 1
    assert "outcome: login_required" in capsys.readouterr().out


def test_a_subject_that_is_not_a_string_is_named_as_such(tmp_path: Path, capsys) -> None:
    session = tmp_path / "s.json"
    session.write_text(json.dumps({"subject": 5, "events": [{"method": "pwd", "at": "-1h"}]}))
    assert main(["explain", "--client", "portal", "--session", str(session)]) == 2
    assert "subject must be a non-empty string (the user's sub), not 5" in capsys.readouterr().err


def test_validate_points_a_test_file_to_the_test_command(capsys) -> None:
    path = str(ROOT / "policies" / "tests" / "payments.test.yaml")
    assert main(["validate", path]) == 2
    assert f"is a policy test file: check and run it with `policy-sso test {path}`" in capsys.readouterr().err
