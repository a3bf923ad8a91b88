"""Two instances on one real Redis (issue 18): a password change, a TOTP enrolment and a passkey
registered through one provider are used to sign in through the other, which shares only the
store and the state directory's key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from soft_authenticator import ISSUER, SoftKey

from policy_sso.audit import AuditLog
from policy_sso.oidc import account, enrolment, passkeys, sign_in
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.model import AuthEvent, new_session
from policy_sso.sessions.store import open_store
from policy_sso.tenant import load_tenant

NOW = 1_800_000_000
KEY = b"shared-state-dir-key-0123456789ab"


@pytest.fixture
def instances(redis_url: str, demo_dir: Path, tmp_path: Path) -> Iterator[tuple[Provider, Provider]]:
    import shutil

    import redis

    redis.Redis.from_url(redis_url).flushdb()
    # a copy: a password changed on a Redis store is written into users.yaml too
    shutil.copytree(demo_dir, tmp_path / "tenant", ignore=shutil.ignore_patterns("tests"))
    settings = tmp_path / "tenant" / "tenant.yaml"  # the passkeys' issuer, which a reload keeps
    settings.write_text(settings.read_text().replace("issuer: http://127.0.0.1:8080", f"issuer: {ISSUER}"))
    tenant = load_tenant(tmp_path / "tenant")
    stores = [open_store(redis_url, tenant.settings.lifetime) for _ in range(2)]
    a, b = (Provider.build(tenant, s, None, KEY, AuditLog.disabled()) for s in stores)
    yield a, b
    for s in stores:
        s.close()


def signed_in(p: Provider, subject: str, now: int = NOW) -> object:
    session = new_session(subject, (AuthEvent("pwd", now),), now)
    p.store.create_session(session)
    return session


def test_a_password_changed_on_one_signs_in_on_the_other(instances: tuple[Provider, Provider]) -> None:
    a, b = instances
    session = signed_in(a, "u-alice")
    moved, _ = account.change_password(a, session, "wonderland", "looking-glass", NOW + 1)
    assert moved is not None
    assert sign_in.sign_in_password(b, None, "alice", "looking-glass", NOW + 2).session_id
    assert sign_in.sign_in_password(b, None, "alice", "wonderland", NOW + 2).session_id is None


def test_a_password_changed_on_the_account_page_outlives_a_redis_that_loses_its_data(
        instances: tuple[Provider, Provider]) -> None:
    """The store alone held the new password: a flush would bring back users.yaml's old one (attacker
    review). It is written into users.yaml too, and an instance that finds the data gone re-reads it."""
    import time

    a, b = instances
    now = int(time.time())
    session = signed_in(a, "u-alice", now)
    moved, _ = account.change_password(a, session, "wonderland", "looking-glass", now + 1)
    assert moved is not None
    users = (a.tenant.directory / "users.yaml").read_text()
    assert a.user("u-alice").password_hash in users and a.user("u-alice").password_hash.startswith("$argon2")
    a.store.redis.flushall()
    for p in (a, b):
        assert sign_in.sign_in_password(p, None, "alice", "wonderland", now + 2).session_id is None
        assert sign_in.sign_in_password(p, None, "alice", "looking-glass", now + 2).session_id


def test_a_totp_enrolled_on_one_signs_in_on_the_other(instances: tuple[Provider, Provider]) -> None:
    a, b = instances
    session = signed_in(a, "u-bob")
    secret = enrolment.new_totp_secret()
    assert account.enrolled_with_code(a, session, secret, pyotp.TOTP(secret).at(NOW), NOW) is not None
    assert b.second_factors("u-bob") == ("otp",)
    later = NOW + 60
    on_b = signed_in(b, "u-bob", later)
    attempt = sign_in.sign_in_otp(b, on_b, pyotp.TOTP(secret).at(later), later)
    assert attempt.session_id and b.store.get_session(attempt.session_id, later).mfa


def test_a_passkey_registered_on_one_signs_in_on_the_other(instances: tuple[Provider, Provider]) -> None:
    a, b = instances
    session = signed_in(a, "u-carol")
    key = SoftKey("u-carol")
    ceremony = passkeys.registration(a, session, "carol", NOW)
    passkeys.register(a, session, key.create(ceremony.options), ceremony.state, NOW)
    ceremony = passkeys.authentication(b, NOW + 5)
    response = key.get(ceremony.options)
    subject, events = passkeys.verify(b, response, ceremony.state, NOW + 5)
    assert subject == "u-carol" and [e.method for e in events] == ["hwk", "pin"]
    with pytest.raises(passkeys.PasskeyRefused):  # and the answer is spent for the first one too
        passkeys.verify(a, response, ceremony.state, NOW + 5)
