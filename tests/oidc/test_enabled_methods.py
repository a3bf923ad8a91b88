"""tenant.yaml ``methods`` is what the server accepts, not only what validate checks (author review):
with ``otp`` left out, no one-time code signs in; with ``pwd`` left out, no password does."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyotp

from policy_sso.audit import AuditLog
from policy_sso.oidc import sign_in
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import AuthEvent, new_session
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant

NOW = 1_800_000_000


def provider_with(demo_dir: Path, methods: set[str]) -> Provider:
    demo = load_tenant(demo_dir)
    tenant = Tenant(demo.directory, replace(demo.settings, methods=frozenset(methods)), demo.clients,
                    demo.users, demo.policies, demo.policy_files)
    return Provider.build(tenant, open_store("memory://", tenant.settings.lifetime), None, b"k" * 32,
                          AuditLog.disabled())


def otp_after_password(p: Provider, demo_dir: Path) -> sign_in.Attempt:
    session = new_session("u-alice", (AuthEvent("pwd", NOW),), NOW)
    p.store.create_session(session)
    secret = (demo_dir / "secrets" / "alice.totp").read_text().strip()
    return sign_in.sign_in_otp(p, session, pyotp.TOTP(secret).at(NOW), NOW)


def test_a_one_time_code_signs_in_only_where_otp_is_enabled(demo_dir: Path) -> None:
    assert otp_after_password(provider_with(demo_dir, {"pwd", "otp"}), demo_dir).session_id
    refused = otp_after_password(provider_with(demo_dir, {"pwd", "hwk"}), demo_dir)
    assert refused.session_id is None and refused.message


def test_a_password_signs_in_only_where_pwd_is_enabled(demo_dir: Path) -> None:
    enabled = provider_with(demo_dir, {"pwd", "otp"})
    assert sign_in.sign_in_password(enabled, None, "alice", "wonderland", NOW).session_id
    disabled = provider_with(demo_dir, {"hwk", "otp"})
    refused = sign_in.sign_in_password(disabled, None, "alice", "wonderland", NOW)
    assert refused.session_id is None and refused.message
