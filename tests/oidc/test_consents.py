"""A user's consents across sessions: grant and expiry times, withdrawal and its audit (issue 19)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from policy_sso.oidc.admin import UserNotFound
from policy_sso.oidc.consents import ConsentNotFound, consents_of, list_user_consents, withdraw_user_consents
from policy_sso.sessions.memory import MemoryStore
from policy_sso.sessions.model import AuthEvent, SessionLifetime, new_session
from policy_sso.tenant import load_tenant

TENANT = Path(__file__).parents[1] / "cases" / "tenant-consent"
NOW = 1_767_268_800
DAY = 86400


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def record(self, type_: str, now: int, **fields: object) -> None:
        self.events.append((type_, fields))


@pytest.fixture
def provider():
    store = MemoryStore(SessionLifetime(absolute=60 * DAY))
    tenant = load_tenant(TENANT)
    return SimpleNamespace(store=store, tenant=tenant, audit=Recorder(),
                           user=lambda sub: object() if sub == "u1" else None)


def signed_in(p, at: int = NOW):
    session = new_session("u1", (AuthEvent("pwd", at),), at)
    p.store.create_session(session)
    return session


def test_each_grant_has_its_time_and_the_expiry_of_the_current_policy(provider):
    first, second = signed_in(provider), signed_in(provider)
    provider.store.grant_consent(first.id, "lifetime-app", frozenset({"openid", "profile"}), NOW)
    provider.store.grant_consent(second.id, "lifetime-app", frozenset({"openid", "payments:read"}), NOW + 100)
    provider.store.grant_consent(second.id, "open-app", frozenset({"openid"}), NOW + 5)
    (lifetime, other) = consents_of(provider, "u1", NOW + 200)
    assert lifetime.client_id == "lifetime-app"
    grants = {g.scope: (g.granted_at, g.expires_at) for g in lifetime.grants}
    assert grants == {"openid": (NOW + 100, NOW + 100 + 30 * DAY + 1),  # the newest of the two sessions'
                      "payments:read": (NOW + 100, NOW + 100 + 3600 + 1),  # the when block's 1h
                      "profile": (NOW, NOW + 30 * DAY + 1)}
    assert (lifetime.granted_at, lifetime.expires_at) == (NOW, NOW + 100 + 3601)
    json = lifetime.to_json(NOW + 100 + 3601)
    assert json["scopes"] == ["openid", "payments:read", "profile"] and json["expired"] is True
    assert other.to_json(NOW)["expires_at"] is None  # the default policy sets no lifetime


def test_withdrawing_one_client_touches_every_session_and_is_audited(provider):
    first, second = signed_in(provider), signed_in(provider)
    for session in (first, second):
        provider.store.grant_consent(session.id, "lifetime-app", frozenset({"openid"}), NOW)
    provider.store.grant_consent(second.id, "open-app", frozenset({"email"}), NOW)
    assert withdraw_user_consents(provider, "u1", NOW + 1, "lifetime-app") == {"lifetime-app": ["openid"]}
    assert all("lifetime-app" not in s.consents for s in provider.store.sessions_of("u1", NOW + 1))
    assert [c.client_id for c in list_user_consents(provider, "u1", NOW + 1)] == ["open-app"]
    revoked = {"outcome": "revoked", "client": "lifetime-app", "subject": "u1", "scopes": ["openid"],
               "by": "admin"}
    assert provider.audit.events == [("consent.revoked", revoked)]
    with pytest.raises(ConsentNotFound):
        withdraw_user_consents(provider, "u1", NOW + 2, "lifetime-app")


def test_withdrawing_everything_and_unknown_users(provider):
    session = signed_in(provider)
    provider.store.grant_consent(session.id, "lifetime-app", frozenset({"openid"}), NOW)
    provider.store.grant_consent(session.id, "open-app", frozenset({"email"}), NOW)
    assert withdraw_user_consents(provider, "u1", NOW) == {"lifetime-app": ["openid"], "open-app": ["email"]}
    assert list_user_consents(provider, "u1", NOW) == []
    assert withdraw_user_consents(provider, "u1", NOW) == {}  # nothing left: not an error
    with pytest.raises(UserNotFound):
        list_user_consents(provider, "u-nobody", NOW)
    with pytest.raises(UserNotFound):
        withdraw_user_consents(provider, "u-nobody", NOW)
