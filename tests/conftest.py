"""Shared fixtures: the demo tenant (its path, loaded, a key ring), the compliance tenant, a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import FakeClock

from policy_sso.oidc.keys import KeyRing
from policy_sso.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return ROOT / "policies"


@pytest.fixture(scope="session")
def cases_tenant_dir() -> Path:
    return ROOT / "tests" / "cases" / "tenant"


@pytest.fixture(scope="session")
def demo(demo_dir: Path) -> Tenant:
    """Return the demo tenant (a module that needs another tenant under this name defines its own)."""
    return load_tenant(demo_dir)


@pytest.fixture(scope="session")
def ring(tmp_path_factory: pytest.TempPathFactory, demo: Tenant) -> Any:
    """Return a signing key ring for the demo tenant's algorithms, in a temporary directory."""
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"), demo.settings.tokens.algorithms)


@pytest.fixture
def clock() -> FakeClock:
    """Return a fresh fake clock at ``support.START``."""
    return FakeClock()
