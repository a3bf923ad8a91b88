"""GET /admin/v1/events with falcon's TestClient: the default store sink, 404 without one, 503 on a fault."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from support import app_client

from policy_sso.audit import AuditEvent, AuditLog
from policy_sso.audit.query import EventPage, EventQuery
from policy_sso.audit.sinks import StoreSink
from policy_sso.audit.stores import MemoryEventStore
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app

DEMO = Path(__file__).resolve().parents[2] / "policies"
ADMIN = "admin-token-for-events-api-0123456789"
T0 = 1_800_000_000


class BrokenEvents(MemoryEventStore):
    def query(self, query: EventQuery) -> EventPage:
        raise ConnectionError("the store went away")


@pytest.fixture
def make(demo: Tenant, ring: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    logs: list[AuditLog] = []

    def build(audit: AuditLog | None = None) -> falcon.testing.TestClient:
        if audit is not None:
            logs.append(audit)
        return app_client(demo, ring, lambda: T0, audit=audit)

    yield build
    for log in logs:
        log.close()


def get(client: falcon.testing.TestClient, **params: str) -> falcon.testing.Result:
    return client.simulate_get("/admin/v1/events", params=params,
                               headers={"Authorization": f"Bearer {ADMIN}"})


def test_the_default_store_sink_answers_the_api(make: Callable[..., Any]) -> None:
    client = make()  # tenant.yaml has no audit: block: the store sink is on
    client.simulate_post("/admin/v1/policies/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    deadline = time.monotonic() + 10  # the writer thread stores it within its linger time
    while not (events := get(client, type="policy.reload").json["events"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(e["type"], e["outcome"]) for e in events] == [("policy.reload", "accepted")]


def test_without_a_store_sink_the_api_says_so(make: Callable[..., Any]) -> None:
    resp = get(make(AuditLog.disabled()))
    assert resp.status_code == 404 and resp.json["error"] == "not_found"
    assert "audit.sinks" in resp.json["error_description"]


def test_a_store_fault_is_503_not_500(make: Callable[..., Any]) -> None:
    events = BrokenEvents()
    resp = get(make(AuditLog([StoreSink(events)], events=events)))
    assert resp.status_code == 503 and resp.json["error"] == "temporarily_unavailable"
    assert "went away" not in resp.text


def test_a_username_names_its_subject(make: Callable[..., Any]) -> None:
    events = MemoryEventStore()
    audit = AuditLog([StoreSink(events)], events=events)
    client = make(audit)
    audit.emit(AuditEvent("sign_in.success", T0, subject="u-alice"))
    audit.emit(AuditEvent("sign_in.success", T0, subject="u-bob"))
    assert audit.flush()
    assert [e["subject"] for e in get(client, subject="alice").json["events"]] == ["u-alice"]
    assert [e["subject"] for e in get(client, subject="u-bob").json["events"]] == ["u-bob"]
    assert get(client, subject="nobody").json["events"] == []


def test_the_address_is_the_client_behind_a_trusted_proxy(demo: Tenant, ring: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    proxied = Tenant(demo.directory, replace(demo.settings, trusted_proxies=("127.0.0.0/8",)), demo.clients,
                     demo.users, demo.policies, demo.policy_files)
    events = MemoryEventStore()
    audit = AuditLog([StoreSink(events)], events=events)
    store = open_store("memory://", demo.settings.lifetime)
    client = falcon.testing.TestClient(create_app(proxied, store, ring, clock=lambda: T0, audit=audit))
    params = {"client_id": "portal", "redirect_uri": "http://127.0.0.1:9001/callback",
              "response_type": "code", "scope": "openid", "prompt": "none", "state": "s"}
    client.simulate_get("/authorize", params=params, headers={"X-Forwarded-For": "198.51.100.4, 203.0.113.9"},
                        remote_addr="127.0.0.1")
    assert audit.flush()
    (event,) = events.query(EventQuery(type="authorization.decision")).events
    audit.close()
    assert event["ip"] == "203.0.113.9"  # the first hop the trusted proxy vouches for
