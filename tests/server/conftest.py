"""Unit-test fixtures for the Falcon app: the demo tenant, a memory store, a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from policy_sso.oidc.keys import KeyRing
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant
from server.app import create_app

DEMO = Path(__file__).resolve().parents[2] / "policies"
START = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="session")
def demo() -> Tenant:
    return load_tenant(DEMO)


@pytest.fixture(scope="session")
def ring(tmp_path_factory: pytest.TempPathFactory, demo: Tenant) -> Any:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"), demo.settings.tokens.algorithms)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(demo: Tenant, ring: Any, clock: Clock) -> Callable[..., falcon.testing.TestClient]:
    """Return a factory: a TestClient for the demo tenant (optionally another issuer or store)."""

    def make(issuer: str | None = None, store: Any = None) -> falcon.testing.TestClient:
        tenant = demo if issuer is None else Tenant(
            demo.directory, replace(demo.settings, issuer=issuer), demo.clients, demo.users,
            demo.policies, demo.policy_files)
        store = store or open_store("memory://", tenant.settings.lifetime)
        return falcon.testing.TestClient(create_app(tenant, store, ring, clock=clock))

    return make


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()
