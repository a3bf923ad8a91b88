"""A passkey answer the browser (or anyone) posts is read or refused, never raised (attack review)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from policy_sso.audit import AuditLog
from policy_sso.oidc import passkeys
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant

NOW = 1_800_000_000


@pytest.fixture
def provider(demo_dir: Path) -> Iterator[Provider]:
    demo = load_tenant(demo_dir)
    tenant = Tenant(demo.directory, replace(demo.settings, issuer="http://localhost:8080"), demo.clients,
                    demo.users, demo.policies, demo.policy_files)
    store = open_store("memory://", tenant.settings.lifetime)
    yield Provider.build(tenant, store, None, b"k" * 32, AuditLog.disabled())
    store.close()


@pytest.mark.parametrize("answer", [
    {"id": "x", "response": {"userHandle": "a"}},  # not base64: one character
    {"id": "x", "response": {"userHandle": "\u00e9"}},  # not base64: not ASCII
    {"id": "x", "response": {"userHandle": 5}},
    {"id": "x", "response": "not an object"},
    {"response": {}},
    [],
], ids=["short-handle", "non-ascii-handle", "number-handle", "response-a-string", "no-id", "a-list"])
def test_a_malformed_answer_is_refused_as_unreadable(provider: Provider, answer: object) -> None:
    state = passkeys.authentication(provider, NOW).state
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.verify(provider, json.dumps(answer), state, NOW)
    assert refused.value.message.key == "message.passkey_unreadable"
