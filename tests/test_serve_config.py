"""``policy-sso serve`` configuration: --issuer, POLICY_SSO_<OPTION>, their precedence, the port warning.

Precedence (docs/operations.md "Configuration"): the flag, then the
environment, then tenant.yaml (issuer, store, state_dir), then the default.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from support import app_client, free_port

from policy_sso.cli.main import build_parser
from policy_sso.cli.main import main as cli_main
from policy_sso.cli.serve import issuer_override
from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant
from server.app import issuer_port_mismatch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"
# every serve option and its variable; a serve flag added later must be given one (test below)
OPTIONS = {"config": "POLICY_SSO_CONFIG", "state_dir": "POLICY_SSO_STATE_DIR", "store": "POLICY_SSO_STORE",
           "issuer": "POLICY_SSO_ISSUER", "host": "POLICY_SSO_HOST", "port": "POLICY_SSO_PORT",
           "threads": "POLICY_SSO_THREADS", "log_format": "POLICY_SSO_LOG_FORMAT",
           "log_level": "POLICY_SSO_LOG_LEVEL", "max_request_body_size": "POLICY_SSO_MAX_REQUEST_BODY_SIZE",
           "max_request_header_size": "POLICY_SSO_MAX_REQUEST_HEADER_SIZE",
           "connection_limit": "POLICY_SSO_CONNECTION_LIMIT", "channel_timeout": "POLICY_SSO_CHANNEL_TIMEOUT",
           "workers": "POLICY_SSO_WORKERS"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("POLICY_SSO_") and v != "POLICY_SSO_ADMIN_TOKEN"]:
        monkeypatch.delenv(var)


def serve_args(*argv: str) -> argparse.Namespace:
    """Return the parsed ``serve`` command line (the parser reads the environment when built)."""
    return build_parser().parse_args(["serve", *argv])


def test_every_serve_option_has_an_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    dests = {action.dest for action in serve._actions if action.option_strings} - {"help"}
    assert dests == set(OPTIONS), "a serve flag has no variable here"
    for var in OPTIONS.values():
        assert f"[env {var}]" in help_text, var


@pytest.mark.parametrize(("dest", "value", "parsed"), [
    ("config", "/etc/policy-sso", "/etc/policy-sso"),
    ("state_dir", "/var/lib/policy-sso", "/var/lib/policy-sso"),
    ("store", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("issuer", "https://sso.example.com/", "https://sso.example.com"),
    ("host", "0.0.0.0", "0.0.0.0"),
    ("port", "9443", 9443),
    ("threads", "3", 3),
    ("log_format", "JSON", "json"),
    ("log_level", "warning", "warning"),
    ("max_request_body_size", "1024", 1024),
    ("max_request_header_size", "2048", 2048),
    ("connection_limit", "50", 50),
    ("channel_timeout", "5", 5),
    ("workers", "2", 2),
], ids=str)
def test_the_environment_sets_each_option(monkeypatch: pytest.MonkeyPatch, dest: str, value: str,
                                          parsed: object) -> None:
    monkeypatch.setenv(OPTIONS[dest], value)
    assert getattr(serve_args(), dest) == parsed


def test_the_flag_wins_over_the_environment_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve_args().port == 8080 and serve_args().issuer is None  # the defaults
    monkeypatch.setenv("POLICY_SSO_PORT", "9001")
    monkeypatch.setenv("POLICY_SSO_ISSUER", "https://env.example.com")
    assert (serve_args().port, serve_args().issuer) == (9001, "https://env.example.com")
    flags = serve_args("--port", "9002", "--issuer", "https://flag.example.com")
    assert (flags.port, flags.issuer) == (9002, "https://flag.example.com")


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICY_SSO_PORT", "")
    assert serve_args().port == 8080


@pytest.mark.parametrize(("var", "value"), [
    ("POLICY_SSO_PORT", "eighty"), ("POLICY_SSO_PORT", "70000"), ("POLICY_SSO_THREADS", "0"),
    ("POLICY_SSO_ISSUER", "sso.example.com"), ("POLICY_SSO_ISSUER", "https://sso.example.com/?x=1"),
    ("POLICY_SSO_LOG_FORMAT", "xml"), ("POLICY_SSO_LOG_LEVEL", "loud"),
    ("POLICY_SSO_CONNECTION_LIMIT", "-1"), ("POLICY_SSO_STORE", "bogus://x"), ("POLICY_SSO_STORE", "var/db"),
], ids=str)
def test_a_bad_value_in_the_environment_is_a_usage_error_naming_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    assert cli_main(["serve"]) == 2
    assert var in capsys.readouterr().err


def test_a_bad_store_flag_is_a_usage_error_naming_the_forms(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["serve", "--store", "sqlite.db"]) == 2
    err = capsys.readouterr().err
    assert "--store" in err and "unsupported store URL 'sqlite.db'" in err and "sqlite:///PATH" in err


def test_a_bad_variable_does_not_break_other_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICY_SSO_PORT", "eighty")
    assert cli_main(["validate", str(DEMO)]) == 0


def test_the_issuer_override_survives_a_reload() -> None:
    tenant = load_tenant(DEMO)
    adjust = issuer_override("https://sso.example.com")
    holder = TenantHolder(adjust(tenant), adjust=adjust)
    assert holder.tenant.settings.issuer == "https://sso.example.com"
    result = holder.reload()  # tenant.yaml still says http://127.0.0.1:8080: not an issuer change
    assert result.applied, result.diagnostics
    assert holder.tenant.settings.issuer == "https://sso.example.com"
    assert issuer_override(None)(tenant) is tenant


@pytest.mark.parametrize(("issuer", "port", "warned"), [
    ("http://127.0.0.1:8080", 8080, False),
    ("http://127.0.0.1:8080", 8081, True),
    ("http://localhost", 80, False),
    ("http://localhost", 8080, True),
    ("https://127.0.0.1", 8443, True),
    ("http://[::1]:8080", 9000, True),
    ("https://sso.example.com", 8080, False),  # a public name in front of a proxy: ports differ on purpose
], ids=str)
def test_a_loopback_issuer_on_another_port_is_warned_about(issuer: str, port: int, warned: bool) -> None:
    warning = issuer_port_mismatch(issuer, port)
    assert bool(warning) == warned
    if warned:
        assert f"listens on port {port}" in warning and f":{port}" in warning.split("--issuer ")[1]


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "policy_sso.cli", "--version"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and re.fullmatch(r"policy-sso \d+\.\d+\.\d+\S*\n", proc.stdout)


def _serve(env: dict[str, str], *argv: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "policy_sso.cli", "serve", *argv], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    assert "policy-sso serving" in line, line + proc.stderr.read()
    return proc, line


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_a_server_configured_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    proc, line = _serve({"POLICY_SSO_PORT": str(port), "POLICY_SSO_ISSUER": issuer,
                         "POLICY_SSO_STATE_DIR": str(tmp_path / "state"), "POLICY_SSO_STORE": "memory://",
                         "POLICY_SSO_LOG_FORMAT": "json"})
    try:
        assert f"serving {issuer} on http://127.0.0.1:{port}" in line
        discovery = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        assert discovery["issuer"] == issuer and discovery["token_endpoint"] == f"{issuer}/token"
    finally:
        err = _stop(proc)
    assert (tmp_path / "state" / "keys").is_dir()
    assert "DISAGREE" not in err  # the issuer names the port served
    access = [line for line in err.splitlines() if '"policy_sso.access"' in line]
    assert access and all(line.startswith("{") for line in err.splitlines()), err


def test_the_flag_wins_and_a_port_the_issuer_does_not_name_is_warned_about(tmp_path: Path) -> None:
    port = free_port()
    proc, line = _serve({"POLICY_SSO_ISSUER": "https://env.example.com", "POLICY_SSO_PORT": "1"},
                        "--issuer", "http://127.0.0.1:8080", "--port", str(port), "--store", "memory://",
                        "--state-dir", str(tmp_path / "state"))
    try:
        assert f"serving http://127.0.0.1:8080 on http://127.0.0.1:{port}" in line
        discovery = requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=10)
        assert discovery.json()["issuer"] == "http://127.0.0.1:8080"
    finally:
        err = _stop(proc)
    warning = next(line for line in err.splitlines() if "DISAGREE" in line)
    assert " WARNING " in warning and f"--issuer http://127.0.0.1:{port}" in warning


def test_a_refused_reload_logs_each_diagnostic_on_its_own_line(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Whoever asked (SIGHUP or the admin API), the log says why the running set stays."""
    import shutil

    config = tmp_path / "tenant"
    shutil.copytree(DEMO, config, ignore=shutil.ignore_patterns("tests", "yaml"))
    holder = TenantHolder(load_tenant(config))
    policy = next(config.glob("*.policy"))
    policy.write_text(policy.read_text() + '\npolicy "broken" {\n  clients "nobody-here"\n  require mfa\n}\n'
                      'policy "also-broken" {\n  clients "nobody-either"\n}\n')
    caplog.set_level(logging.WARNING, logger="policy_sso.reload")
    result = holder.reload()
    assert not result.applied and len(result.diagnostics) >= 2
    refused = [r.getMessage() for r in caplog.records if "policy reload refused: " in r.getMessage()]
    assert refused == [f"policy reload refused: {d}" for d in result.diagnostics]


# --- the admin token's strength (docs/configuration.md: admin_token, at least 32 characters) ---------

@pytest.mark.parametrize("token", ["abc", "x" * 31], ids=["3-characters", "31-characters"])
def test_a_short_admin_token_refuses_to_start(tmp_path: Path, token: str) -> None:
    # a process with a timeout: a server that starts anyway would serve until killed
    proc = subprocess.run([sys.executable, "-m", "policy_sso.cli", "serve", "--store", "memory://",
                           "--state-dir", str(tmp_path / "state"), "--port", "0"], cwd=ROOT,
                          env={**os.environ, "POLICY_SSO_ADMIN_TOKEN": token}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 1  # as other configuration errors (an unloadable tenant, a store that fails)
    assert f"the admin token (env POLICY_SSO_ADMIN_TOKEN) is {len(token)} characters" in proc.stderr
    assert "at least 32" in proc.stderr and token not in proc.stderr.replace("characters", "")
    assert "Traceback" not in proc.stderr


def test_an_admin_token_shortened_after_start_disables_the_admin_api(monkeypatch: pytest.MonkeyPatch,
                                                                     ring: object) -> None:
    client = app_client(load_tenant(DEMO), ring, lambda: 1_800_000_000)
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", "abc")  # read at each call: no longer what started
    resp = client.simulate_post("/admin/v1/policies/reload", headers={"Authorization": "Bearer abc"})
    assert resp.status_code == 401
    assert "at least 32" in resp.json["error_description"]
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", "a" * 32)
    resp = client.simulate_post("/admin/v1/policies/reload", headers={"Authorization": "Bearer " + "a" * 32})
    assert resp.status_code == 200, resp.text


def test_a_config_that_is_not_a_tenant_directory_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert cli_main(["serve", "--config", str(missing)]) == 2  # README: a path that does not exist
    err = capsys.readouterr().err
    assert err == f"policy-sso serve: {missing} is not a tenant directory (no tenant.yaml)\n"
