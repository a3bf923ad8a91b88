"""A live policy-sso on waitress (loopback, free port, SQLite, fake clock) and a browser to drive it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_support import LogoutReceiver
from live_op import BrowserAgent, LiveOP, copy_demo, serve_op, with_issuer

from policy_sso.reload import TenantHolder
from policy_sso.tenant import Tenant


@pytest.fixture(scope="session")
def demo_tenant(demo: Tenant) -> Tenant:
    """Return the demo tenant (tests/conftest.py's ``demo``, under the name these tests use)."""
    return demo


@pytest.fixture(scope="session")
def keyring(ring: Any) -> Any:
    """Return the demo tenant's key ring (tests/conftest.py's ``ring``)."""
    return ring


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant | TenantHolder]:
    """Return the tenant to serve at a URL (a module overrides this to serve a variant)."""
    return lambda url: with_issuer(demo_tenant, url)


@pytest.fixture
def op(tenant_for: Callable[[str], Tenant | TenantHolder], keyring: Any, tmp_path: Path) -> Iterator[LiveOP]:
    """Serve ``tenant_for``'s tenant (the demo) on a free loopback port with that issuer."""
    with serve_op(tenant_for, f"sqlite:///{tmp_path}/op.db", keyring) as live:
        yield live


@pytest.fixture
def browser(op: LiveOP) -> BrowserAgent:
    return BrowserAgent(op)


@pytest.fixture
def new_browser(op: LiveOP) -> Callable[[], BrowserAgent]:
    return lambda: BrowserAgent(op)


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    """Yield a relying party's back-channel logout endpoint on loopback, closed afterwards."""
    rp = LogoutReceiver()
    yield rp
    rp.close()


@pytest.fixture
def tenant_dir(tmp_path: Path) -> Path:
    """Return a copy of the demo tenant on disk (reloads and password changes touch only the copy)."""
    return copy_demo(tmp_path / "tenant")
