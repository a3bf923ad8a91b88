"""A live policy-sso on waitress (loopback, free port, SQLite, fake clock) and a browser to drive it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import waitress
from live_op import DEMO, BrowserAgent, FakeClock, LiveOP, with_issuer

from policy_sso.oidc.keys import KeyRing
from policy_sso.reload import TenantHolder
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant
from server.app import create_app


@pytest.fixture(scope="session")
def demo_tenant() -> Tenant:
    return load_tenant(DEMO)


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory, demo_tenant: Tenant) -> Any:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"), demo_tenant.settings.tokens.algorithms)


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant | TenantHolder]:
    """Return the tenant to serve at a URL (a module overrides this to serve a variant)."""
    return lambda url: with_issuer(demo_tenant, url)


@pytest.fixture
def op(tenant_for: Callable[[str], Tenant | TenantHolder], keyring: Any, tmp_path: Path) -> Iterator[LiveOP]:
    """Serve ``tenant_for``'s tenant (the demo) on a free loopback port with that issuer."""
    server = waitress.create_server(lambda env, start: [], host="127.0.0.1", port=0, threads=4)
    url = f"http://127.0.0.1:{server.effective_port}"
    served = tenant_for(url)
    tenant = served.tenant if isinstance(served, TenantHolder) else served
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/op.db", tenant.settings.lifetime, tenant.settings.store_options)
    server.application = create_app(served, store, keyring, clock=clock)
    stop = threading.Event()

    def run() -> None:
        # waitress's own run() blocks in select(); this loop can be stopped between polls
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)
        server.close()
        server.task_dispatcher.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield LiveOP(url, clock, store, tenant, keyring)
    finally:
        stop.set()
        thread.join(timeout=5)
        store.close()


@pytest.fixture
def browser(op: LiveOP) -> BrowserAgent:
    return BrowserAgent(op)


@pytest.fixture
def new_browser(op: LiveOP) -> Callable[[], BrowserAgent]:
    return lambda: BrowserAgent(op)
