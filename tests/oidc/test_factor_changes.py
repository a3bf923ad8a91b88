"""Who may change a user's factors: a user with a second factor must have used one (a password alone
never adds, replaces or removes one). Found by attack reviews: alice's password replaced her
authenticator app; then a synced passkey, which proves ``swk``, never counted as hers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policy_sso.audit import AuditLog
from policy_sso.oidc import account, enrolment
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import AuthEvent, new_session
from policy_sso.sessions.store import open_store
from policy_sso.tenant import load_tenant

NOW = 1_800_000_000


@pytest.fixture
def provider(demo_dir: Path) -> Iterator[Provider]:
    tenant = load_tenant(demo_dir)
    store = open_store("memory://", tenant.settings.lifetime)
    yield Provider.build(tenant, store, None, b"k" * 32, AuditLog.disabled())
    store.close()


def session_with(p: Provider, subject: str, *methods: str):
    session = new_session(subject, tuple(AuthEvent(m, NOW) for m in methods), NOW)
    p.store.create_session(session)
    return session


def allowed(p: Provider, session) -> tuple[bool, bool]:
    return enrolment.may_enrol(p, session, "otp", NOW + 1), account.recent_enough(p, session, NOW + 1)


def test_a_user_without_a_second_factor_enrols_after_a_password(provider: Provider) -> None:
    assert allowed(provider, session_with(provider, "u-bob", "pwd")) == (True, True)


def test_a_password_alone_does_not_do_for_a_user_with_an_authenticator_app(provider: Provider) -> None:
    assert enrolment.factor_proofs(provider, "u-alice") == {"otp"}  # seeded in users.yaml
    assert allowed(provider, session_with(provider, "u-alice", "pwd")) == (False, False)
    assert allowed(provider, session_with(provider, "u-alice", "pwd", "otp")) == (True, True)


@pytest.mark.parametrize(("synced", "proves"), [(False, "hwk"), (True, "swk")])
def test_a_passkey_counts_by_what_it_proves(provider: Provider, synced: bool, proves: str) -> None:
    provider.store.put_credential("u-bob", "pk:1", {"kind": "passkey", "synced": synced, "label": "key"})
    assert enrolment.factor_proofs(provider, "u-bob") == {proves}
    assert allowed(provider, session_with(provider, "u-bob", "pwd")) == (False, False)
    assert allowed(provider, session_with(provider, "u-bob", "pwd", proves, "pin")) == (True, True)
    assert allowed(provider, session_with(provider, "u-bob", "pwd", "otp")) == (False, False)  # not his


def test_the_proof_must_be_recent(provider: Provider) -> None:
    session = session_with(provider, "u-alice", "pwd", "otp")
    later = NOW + provider.tenant.settings.enrolment.within + 1
    assert not enrolment.may_enrol(provider, session, "otp", later)
    assert not account.recent_enough(provider, session, later)


def test_a_factor_the_tenant_does_not_accept_is_not_asked_for(demo_dir: Path) -> None:
    # alice's seeded authenticator app, in a tenant that takes no one-time codes: her password does
    from dataclasses import replace

    demo = load_tenant(demo_dir)
    methods = frozenset(demo.settings.methods) - {"otp"}
    tenant = replace(demo, settings=replace(demo.settings, methods=methods))
    store = open_store("memory://", tenant.settings.lifetime)
    p = Provider.build(tenant, store, None, b"k" * 32, AuditLog.disabled())
    assert enrolment.factor_proofs(p, "u-alice") == frozenset()
    assert account.recent_enough(p, session_with(p, "u-alice", "pwd"), NOW + 1)
    store.close()
