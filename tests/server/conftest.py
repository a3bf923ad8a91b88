"""Fixtures for the Falcon app: TestClients of the demo tenant (demo, ring, clock: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from support import FakeClock, app_client

from policy_sso.tenant import Tenant

DEMO = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def make_client(demo: Tenant, ring: Any, clock: FakeClock) -> Callable[..., falcon.testing.TestClient]:
    """Return a factory: a TestClient for the demo tenant (optionally another issuer or store)."""

    def make(issuer: str | None = None, store: Any = None) -> falcon.testing.TestClient:
        tenant = demo if issuer is None else Tenant(
            demo.directory, replace(demo.settings, issuer=issuer), demo.clients, demo.users,
            demo.policies, demo.policy_files)
        return app_client(tenant, ring, clock, store)

    return make


@pytest.fixture
def client(make_client: Callable[..., falcon.testing.TestClient]) -> falcon.testing.TestClient:
    return make_client()
