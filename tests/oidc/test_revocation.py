"""Who may introspect and revoke which token (RFC 7662 §2.1, §4; RFC 7009 §2.1), over HTTP.

A public client ("spa") authenticates with its client_id alone, so it may only
see and revoke its own tokens; a confidential client must present its secret;
a refresh token is described only to the client it was issued to.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from policy_sso.oidc.authorization_flow import mint_access_token
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.provider import Provider
from policy_sso.sessions.store import open_store, token_key
from policy_sso.tenant import Tenant
from server.app import create_app

DEMO = Path(__file__).resolve().parents[2] / "policies"
NOW = 1_800_000_000


def secret(client_id: str) -> str:
    return (DEMO / "secrets" / f"{client_id}.secret").read_text().strip()


def basic(client_id: str) -> dict[str, str]:
    raw = f"{client_id}:{secret(client_id)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


class World:
    """An app and, on the same store and keys, a provider that mints tokens as the app would."""

    def __init__(self, demo: Tenant, ring: KeyRing) -> None:
        self.store = open_store("memory://", demo.settings.lifetime)
        self.provider = Provider.build(demo, self.store, ring)
        self.http = falcon.testing.TestClient(create_app(demo, self.store, ring, clock=lambda: NOW))

    def access(self, client_id: str, jti: str) -> str:
        return mint_access_token(self.provider, Grant("alice-sub", client_id, "openid profile"), NOW, jti)

    def refresh(self, client_id: str, value: str) -> str:
        grant = Grant("alice-sub", client_id, "openid offline_access")
        self.store.put_refresh(token_key(value), f"family-{value}", grant.to_json(), NOW + 3600, now=NOW)
        return value

    def post(self, path: str, caller: str, token: str, *, public: bool = False) -> falcon.testing.Result:
        form = {"token": token}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if public:
            form["client_id"] = caller
        else:
            headers.update(basic(caller))
        return self.http.simulate_post(path, body="&".join(f"{k}={v}" for k, v in form.items()),
                                       headers=headers)


@pytest.fixture
def world(demo: Tenant, ring: KeyRing) -> World:
    return World(demo, ring)


OWN_AND_OTHERS: list[tuple[str, bool, Callable[[World], str], bool]] = [
    # caller, caller is public, the token, whether introspection describes it
    ("spa", True, lambda w: w.access("spa", "a1"), True),
    ("spa", True, lambda w: w.access("portal", "a2"), False),
    ("spa", True, lambda w: w.refresh("portal", "r-portal"), False),
    ("spa", True, lambda w: w.refresh("spa", "r-spa"), True),
    ("portal", False, lambda w: w.access("portal", "a3"), True),
    ("payments-api", False, lambda w: w.access("portal", "a4"), True),  # a resource server
    ("payments-api", False, lambda w: w.refresh("portal", "r-portal2"), False),
]


@pytest.mark.parametrize(("caller", "public", "make", "described"), OWN_AND_OTHERS,
                         ids=["public-own-access", "public-other-access", "public-other-refresh",
                              "public-own-refresh", "confidential-own-access",
                              "resource-server-other-access", "confidential-other-refresh"])
def test_introspection_describes_only_tokens_the_caller_may_see(world: World, caller: str, public: bool,
                                                                 make: Callable[[World], str],
                                                                 described: bool) -> None:
    token = make(world)
    resp = world.post("/introspect", caller, token, public=public)
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json
    assert body["active"] is described
    if not described:
        assert body == {"active": False}  # RFC 7662 §2.2: nothing else about a token one may not see


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_a_confidential_client_must_authenticate(world: World, path: str) -> None:
    token = world.access("portal", "c1")
    resp = world.http.simulate_post(path, body=f"token={token}&client_id=portal",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 401
    assert resp.json["error"] == "invalid_client"
    wrong = base64.b64encode(b"portal:not-the-secret").decode()
    resp = world.http.simulate_post(path, body=f"token={token}", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {wrong}"})
    assert resp.status_code == 401
    assert world.post("/introspect", "portal", token).json["active"] is True


def test_revoking_another_clients_tokens_is_a_no_op(world: World) -> None:
    access = world.access("portal", "v1")
    refresh = world.refresh("portal", "r-v1")
    for token in (access, refresh):
        resp = world.post("/revoke", "spa", token, public=True)
        assert resp.status_code == 200  # RFC 7009 §2.2: the caller learns nothing about the token
        resp = world.post("/revoke", "payments-api", token)
        assert resp.status_code == 200
    assert world.post("/introspect", "portal", access).json["active"] is True
    assert world.post("/introspect", "portal", refresh).json["active"] is True


def test_a_client_revokes_its_own_tokens(world: World) -> None:
    access = world.access("spa", "v2")
    refresh = world.refresh("spa", "r-v2")
    for token in (access, refresh):
        assert world.post("/revoke", "spa", token, public=True).status_code == 200
        assert world.post("/introspect", "spa", token, public=True).json == {"active": False}
