"""Every backend keeps a user's run-time credentials the same way (issue 18): enrolled TOTP
secrets, passkeys and changed passwords, keyed by subject and credential id; a compare-and-set
replace for a passkey's sign count."""

from __future__ import annotations

import threading

import pytest

from policy_sso.sessions.store import Store


@pytest.fixture
def creds(store: Store) -> Store:
    if not hasattr(store, "put_credential"):
        pytest.skip(f"LOUD: {type(store).__name__} has no credential methods yet (issue 18; lead: add them)")
    return store


def test_put_read_replace_and_delete(creds: Store) -> None:
    assert creds.credentials_of("u-1") == {}
    creds.put_credential("u-1", "totp", {"kind": "totp", "sealed": "abc"})
    creds.put_credential("u-1", "pk-1", {"kind": "passkey", "sign_count": 1, "aaguid": None})
    creds.put_credential("u-2", "pk-1", {"kind": "passkey", "sign_count": 9})  # same id, another user
    assert creds.credentials_of("u-1") == {"totp": {"kind": "totp", "sealed": "abc"},
                                           "pk-1": {"kind": "passkey", "sign_count": 1, "aaguid": None}}
    creds.put_credential("u-1", "totp", {"kind": "totp", "sealed": "def"})  # re-enrolment replaces
    assert creds.credentials_of("u-1")["totp"]["sealed"] == "def"
    assert creds.delete_credential("u-1", "totp") and not creds.delete_credential("u-1", "totp")
    assert set(creds.credentials_of("u-1")) == {"pk-1"}
    assert creds.credentials_of("u-2") == {"pk-1": {"kind": "passkey", "sign_count": 9}}


def test_a_returned_record_is_a_copy(creds: Store) -> None:
    creds.put_credential("u-1", "pk", {"kind": "passkey", "sign_count": 1})
    creds.credentials_of("u-1")["pk"]["sign_count"] = 99
    assert creds.credentials_of("u-1")["pk"]["sign_count"] == 1


def test_replace_is_compare_and_set(creds: Store) -> None:
    old = {"kind": "passkey", "sign_count": 1, "public_key": "k"}
    creds.put_credential("u-1", "pk", old)
    assert not creds.replace_credential("u-1", "pk", {**old, "sign_count": 0}, {**old, "sign_count": 5})
    assert creds.replace_credential("u-1", "pk", old, {**old, "sign_count": 2})
    assert not creds.replace_credential("u-1", "pk", old, {**old, "sign_count": 3})  # already moved on
    assert not creds.replace_credential("u-1", "gone", old, old)
    assert creds.credentials_of("u-1")["pk"]["sign_count"] == 2


def test_of_racing_replacements_one_wins(creds: Store) -> None:
    old = {"kind": "passkey", "sign_count": 1}
    creds.put_credential("u-1", "pk", old)
    wins: list[bool] = []

    def race(n: int) -> None:
        wins.append(creds.replace_credential("u-1", "pk", old, {"kind": "passkey", "sign_count": 2 + n}))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert wins.count(True) == 1


def test_withdraw_consent_keeps_the_others(store: Store) -> None:
    from policy_sso.sessions.model import AuthEvent, new_session

    if not hasattr(store, "withdraw_consent"):
        pytest.skip(f"LOUD: {type(store).__name__} has no withdraw_consent yet (issue 18; lead: add it)")
    session = new_session("u-1", (AuthEvent("pwd", 1000),), 1000)
    store.create_session(session)
    store.grant_consent(session.id, "a", frozenset({"openid", "x"}), 1000)
    store.grant_consent(session.id, "b", frozenset({"openid"}), 1000)
    after = store.withdraw_consent(session.id, "a", 1001)
    assert after is not None and after.consents == {"b": frozenset({"openid"})}
    assert store.get_session(session.id, 1002).consents == {"b": frozenset({"openid"})}
    assert store.withdraw_consent("nope", "a", 1002) is None
