"""Shared fixtures: paths to the demo tenant and the compliance tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return ROOT / "policies"


@pytest.fixture(scope="session")
def cases_tenant_dir() -> Path:
    return ROOT / "tests" / "cases" / "tenant"
