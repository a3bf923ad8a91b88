"""Operator commands: keys rotate, users add, hint mint."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import jwt
import pytest

from policy_sso.cli import main
from policy_sso.credentials import verify_password
from policy_sso.oidc.keys import KeyRing
from policy_sso.tenant import load_tenant


@pytest.fixture
def tenant_dir(tmp_path: Path, demo_dir: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


def test_keys_rotate_adds_a_current_key_and_keeps_the_old(tmp_path, capsys):
    before = KeyRing.load_or_create(tmp_path).signing_key("RS256")[0]
    assert main(["keys", "rotate", "--state-dir", str(tmp_path), "--alg", "RS256"]) == 0
    ring = KeyRing.load_or_create(tmp_path)
    assert ring.signing_key("RS256")[0] != before
    assert before in {k["kid"] for k in ring.jwks()["keys"]}
    assert "new signing key" in capsys.readouterr().out


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
    assert "otpauth://totp/" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--username", "alice"], "a long enough password\n", "already exists"),
    (["--username", "erin", "--sub", "u-bob"], "a long enough password\n", "already exists"),
    (["--username", "erin"], "short\n", "at least 8 characters"),
], ids=["duplicate-username", "duplicate-sub", "short-password"])
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


def test_hint_mint_needs_a_key(tenant_dir, capsys):
    assert main(["hint", "mint", "--config", str(tenant_dir), "--issuer", "x", "--sub", "u"]) == 2
    assert "--key" in capsys.readouterr().err
