"""Operator commands: keys rotate, users add, hint mint."""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.cli import main
from policy_sso.credentials import verify_password
from policy_sso.oidc.keys import PUBLISH_AHEAD, KeyRing
from policy_sso.tenant import load_tenant

T0 = 1_800_000_000


@pytest.fixture
def tenant_dir(tmp_path: Path, demo_dir: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


def test_keys_rotate_adds_a_key_that_signs_once_published_and_keeps_the_old(tenant_dir, tmp_path, capsys):
    state = tmp_path / "state"
    before = KeyRing.load_or_create(state, now=T0).signing_key("RS256", T0)[0]
    assert main(["keys", "rotate", "--config", str(tenant_dir), "--state-dir", str(state),
                 "--alg", "RS256"]) == 0
    assert "new signing key" in capsys.readouterr().out
    ring = KeyRing.load_or_create(state, now=T0 + 60)  # a server starting: it publishes the key now
    assert ring.signing_key("RS256", T0 + 60)[0] == before  # not yet: caches of /jwks lack it
    after = ring.signing_key("RS256", T0 + 60 + PUBLISH_AHEAD)[0]
    assert after != before
    assert {before, after} <= {k["kid"] for k in ring.jwks(T0 + 60 + PUBLISH_AHEAD)["keys"]}


def test_keys_rotate_refuses_a_state_directory_that_does_not_exist(tenant_dir, tmp_path, capsys):
    # a mistyped --state-dir used to get a fresh key set no server reads, and exit 0
    missing = tmp_path / "nonexistent" / "state"
    assert main(["keys", "rotate", "--config", str(tenant_dir), "--state-dir", str(missing)]) == 2
    assert f"no state directory {missing}" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()


def test_keys_rotate_touches_only_the_configured_algorithms(tenant_dir, tmp_path, capsys):
    tenant_yaml = tenant_dir / "tenant.yaml"
    text = tenant_yaml.read_text()
    assert "algorithms: [RS256, ES256, EdDSA]" in text
    tenant_yaml.write_text(text.replace("algorithms: [RS256, ES256, EdDSA]", "algorithms: [RS256]"))
    clients_yaml = tenant_dir / "clients.yaml"  # clients signing with ES256/EdDSA would be E_CLIENT_ALG
    clients_yaml.write_text("".join(line for line in clients_yaml.read_text().splitlines(keepends=True)
                                    if "id_token_signed_response_alg" not in line))
    state = tmp_path / "state"
    state.mkdir()  # keys made before the first server starts
    assert main(["keys", "rotate", "--config", str(tenant_dir), "--state-dir", str(state)]) == 0
    assert sorted(p.name for p in (state / "keys").glob("*.pem")) == ["RS256.0001.pem"]
    assert main(["keys", "rotate", "--config", str(tenant_dir), "--state-dir", str(state),
                 "--alg", "ES256"]) == 2
    assert "not among the tenant's algorithms" in capsys.readouterr().err
    assert sorted(p.name for p in (state / "keys").glob("*.pem")) == ["RS256.0001.pem"]


def test_users_add_appends_a_loadable_user_with_an_argon2_hash(tenant_dir, monkeypatch, capsys):
    comment = "# Demo users"
    assert comment in (tenant_dir / "users.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    status = main(["users", "add", "--config", str(tenant_dir), "--username", "dave", "--sub", "u-dave",
                   "--email", "dave@example.com", "--totp", "--password-stdin"])
    assert status == 0, capsys.readouterr().err
    user = load_tenant(tenant_dir).users["u-dave"]
    assert verify_password(user.password_hash, "a long enough password")
    assert user.claims == {"email": "dave@example.com"}
    assert user.totp_secret is not None and (tenant_dir / "secrets" / "dave.totp").stat().st_mode & 0o077 == 0
    assert comment in (tenant_dir / "users.yaml").read_text()  # comments kept
    err = capsys.readouterr().err
    # Key Uri Format: "issuer:account", so the issuer shown is the host, without a port's colon
    uri = re.search(r"otpauth://totp/(\S+)", err)
    assert uri is not None, err
    label, _, query = uri.group(1).partition("?")
    assert urllib.parse.unquote(label) == "127.0.0.1:dave"
    assert urllib.parse.parse_qs(query)["issuer"] == ["127.0.0.1"]
    assert "SIGHUP" in err  # a running server signs the new user in once it reloads


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--username", "alice"], "a long enough password\n", "already exists"),
    (["--username", "erin", "--sub", "u-bob"], "a long enough password\n", "already exists"),
    (["--username", "erin"], "short\n", "at least 8 characters"),
    (["--username", ""], "a long enough password\n", "--username must not be empty"),
    (["--username", " "], "a long enough password\n", "--username must not be empty"),
], ids=["duplicate-username", "duplicate-sub", "short-password", "empty-username", "blank-username"])
def test_users_add_refuses_and_changes_nothing(tenant_dir, monkeypatch, capsys, args, stdin, message):
    before = (tenant_dir / "users.yaml").read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["users", "add", "--config", str(tenant_dir), "--password-stdin", *args]) in (1, 2)
    assert message in capsys.readouterr().err
    assert (tenant_dir / "users.yaml").read_text() == before


def test_hint_mint_uses_the_trusting_policy(tenant_dir, capsys):
    key = tenant_dir / "secrets" / "intranet-hint.key"
    assert main(["hint", "mint", "--config", str(tenant_dir), "--issuer", "https://intranet.example.com",
                 "--sub", "u-alice", "--key", str(key)]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, key.read_bytes().strip(), algorithms=["HS256"], audience="http://127.0.0.1:8080",
                        options={"verify_exp": False})
    assert claims["iss"] == "https://intranet.example.com" and claims["sub"] == "u-alice"
    assert claims["exp"] - claims["iat"] == 120 and claims["jti"]


@pytest.mark.parametrize(("environment", "flags", "audience"), [
    ({}, [], "http://127.0.0.1:8080"),
    ({"POLICY_SSO_ISSUER": "http://127.0.0.1:9000/"}, [], "http://127.0.0.1:9000"),
    ({"POLICY_SSO_ISSUER": "http://127.0.0.1:9000"}, ["--audience", "https://sso.example.com"],
     "https://sso.example.com"),
], ids=["tenant-yaml-issuer", "POLICY_SSO_ISSUER-as-serve-reads-it", "the-flag-wins"])
def test_hint_mint_is_addressed_to_the_issuer_serve_runs_with(tenant_dir, capsys, monkeypatch, environment,
                                                               flags, audience):
    monkeypatch.delenv("POLICY_SSO_ISSUER", raising=False)
    for var, value in environment.items():
        monkeypatch.setenv(var, value)
    assert main(["hint", "mint", "--config", str(tenant_dir), "--issuer", "https://intranet.example.com",
                 "--sub", "u-alice", "--key", str(tenant_dir / "secrets" / "intranet-hint.key"), *flags]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == audience


def test_hint_mint_refuses_a_bad_issuer_in_the_environment_naming_it(tenant_dir, capsys, monkeypatch):
    monkeypatch.setenv("POLICY_SSO_ISSUER", "sso.example.com")
    assert main(["hint", "mint", "--config", str(tenant_dir), "--issuer", "https://intranet.example.com",
                 "--sub", "u-alice", "--key", str(tenant_dir / "secrets" / "intranet-hint.key")]) == 2
    assert "POLICY_SSO_ISSUER" in capsys.readouterr().err


def test_hint_mint_needs_a_key(tenant_dir, capsys):
    assert main(["hint", "mint", "--config", str(tenant_dir), "--issuer", "x", "--sub", "u"]) == 2
    assert "--key" in capsys.readouterr().err


# --- users add without a terminal -------------------------------------------------------------

def _cli(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI as a user's script would: a pipe for stdin, no terminal."""
    return subprocess.run([sys.executable, "-m", "policy_sso.cli", *args], input=stdin, capture_output=True,
                          text=True, check=False, cwd=cwd, timeout=120)


GIVEN_TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits


def test_users_add_reads_the_password_from_a_pipe_and_creates_users_yaml(tenant_dir):
    (tenant_dir / "users.yaml").unlink()
    run = _cli("users", "add", "--config", str(tenant_dir), "--username", "erin", "--sub", "u-erin",
               "--totp-secret", GIVEN_TOTP.lower(), stdin="piped password\n")
    assert run.returncode == 0, run.stderr
    assert "(created)" in run.stdout and "otpauth" not in run.stderr  # a given secret is not echoed
    user = load_tenant(tenant_dir).users["u-erin"]
    assert verify_password(user.password_hash, "piped password")
    assert (tenant_dir / "secrets" / "erin.totp").read_text() == GIVEN_TOTP + "\n"
    assert GIVEN_TOTP not in (tenant_dir / "users.yaml").read_text()  # secrets never in the YAML


def test_users_add_opens_an_empty_users_list_from_a_password_file(tenant_dir, tmp_path):
    (tenant_dir / "users.yaml").write_text("users: []  # nobody yet\n")
    password = tmp_path / "pw"
    password.write_text("from a file 123\nsecond line ignored\n")
    run = _cli("users", "add", "--config", str(tenant_dir), "--username", "fay", "--sub", "u-fay",
               "--password-file", str(password))
    assert run.returncode == 0, run.stderr
    users = load_tenant(tenant_dir).users
    assert list(users) == ["u-fay"] and verify_password(users["u-fay"].password_hash, "from a file 123")


@pytest.mark.parametrize(("args", "message"), [
    (["--totp-secret", "JBSWY3DPEHPK3PXP"], "--totp-secret has 80 bits; at least 128 required"),
    (["--totp-secret", "not base32!"], "--totp-secret is not base32"),
    (["--password-file", "/nonexistent/pw"], "cannot read --password-file /nonexistent/pw"),
], ids=["short-totp", "garbled-totp", "missing-password-file"])
def test_users_add_usage_errors_exit_2_and_change_nothing(tenant_dir, args, message):
    before = (tenant_dir / "users.yaml").read_text()
    run = _cli("users", "add", "--config", str(tenant_dir), "--username", "gil", *args,
               stdin="long enough pw\n")
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert (tenant_dir / "users.yaml").read_text() == before
    assert not (tenant_dir / "secrets" / "gil.totp").exists()


# --- the CLI as a whole -------------------------------------------------------------------------

def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    run = _cli("--version")
    assert (run.returncode, run.stdout) == (0, f"policy-sso {version('policy-sso')}\n")


@pytest.mark.parametrize("option", ["--bogus", "--config=policies", "-x"])
def test_an_unknown_option_before_the_command_is_named(option):
    run = _cli(option, "validate")
    assert run.returncode == 2
    assert f"unrecognized option {option}" in run.stderr and "required" not in run.stderr


def test_help_texts_speak_to_users():
    from policy_sso.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in actions:
        for sub in action.choices.values():
            texts.append(sub.format_help())
            for nested in (a for a in sub._actions if isinstance(a, argparse._SubParsersAction)):
                texts += [p.format_help() for p in nested.choices.values()]
    assert len(texts) > 10
    for text in texts:
        assert "SPEC" not in text and "§6" not in text, text


@pytest.mark.parametrize("args", [
    ["validate"], ["validate", "nowhere"], ["explain", "--client", "portal"],
    ["explain", "--client", "portal", "--session", "nowhere.json"],
    ["explain", "--client", "portal", "--session", "policies/tenant.yaml", "--config", "nowhere"],
    ["explain", "--client", "portl", "--session", "policies/tenant.yaml"],
    ["test", "nowhere"], ["lint", "nowhere"], ["fmt", "nowhere"], ["diff", "policies", "nowhere"],
    ["users", "add", "--config", "nowhere", "--username", "x"],
    ["hint", "mint", "--issuer", "x", "--sub", "y", "--key", "nowhere"],
    ["hint", "mint", "--issuer", "x", "--sub", "y", "--key", "policies/tenant.yaml",
     "--lifetime", "5 minutes"],
    ["keys", "rotate", "--config", "nowhere"], ["no-such-command"],
], ids=lambda a: "-".join(a)[:40])
def test_usage_errors_and_missing_paths_exit_2_without_a_traceback(args):
    run = _cli(*args, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and run.stderr.strip()


# --- no input yields a traceback ----------------------------------------------------------------

COMMANDS = [["validate"], ["explain"], ["test"], ["lint"], ["fmt"], ["diff"], ["users", "add"],
            ["hint", "mint"], ["keys", "rotate"], ["users"], []]
WORDS = ["validate", "explain", "add", "mint",
         "--client", "--session", "--config", "--request", "--at", "--format", "--username", "--sub", "--key",
         "--issuer", "--password-file", "--totp-secret", "--sessions", "--check", "--min-coverage", "--alg",
         "policies", "policies/tenant.yaml", "policies/portal.policy", "policies/clients.yaml", "nowhere",
         "portal", "payment-web", "json", "github", "text", "-1h", "yesterday", "1e999", "", "-", "\x00", "é",
         "scope=openid%20x&prompt=none", "JBSWY3DP", "policies/secrets/intranet-hint.key", "RS256", "-v"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), words=st.lists(st.sampled_from(WORDS), max_size=7))
def test_no_command_line_makes_a_traceback(command, words, tmp_path_factory, monkeypatch, capsys):
    argv = [*command, *words]
    work = tmp_path_factory.mktemp("cli")
    shutil.copytree(Path(__file__).resolve().parents[1] / "policies", work / "policies",
                    ignore=shutil.ignore_patterns("yaml"))
    monkeypatch.chdir(work)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's --help
        status = exit_.code
    out, err = capsys.readouterr()
    assert status in (0, 1, 2), (argv, status)
    assert "Traceback" not in out + err, argv
