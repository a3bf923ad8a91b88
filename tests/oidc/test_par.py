"""Pushed authorization requests (RFC 9126): the sealed request_uri opens only here, once, in time."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from support import FakeClock, app_client

from policy_sso.config import ParSettings
from policy_sso.oidc.codes import CodeSealer
from policy_sso.oidc.par import REQUEST_URI_PREFIX, sealer_for
from policy_sso.tenant import Tenant

DEMO = Path(__file__).resolve().parents[2] / "policies"

PARAMS = {"client_id": "portal", "response_type": "code", "scope": "openid",
          "redirect_uri": "http://127.0.0.1:9001/callback", "state": "s"}


def test_a_request_uri_opens_with_its_key_only_and_is_not_readable() -> None:
    codes = CodeSealer(b"k" * 32)
    uri = sealer_for(codes).seal("portal", PARAMS, 1000)
    assert uri.startswith(REQUEST_URI_PREFIX) and "openid" not in uri
    assert sealer_for(codes).open(uri) == ("portal", 1000, PARAMS)
    for respelled in (uri + "=", uri + "==", uri + " ", "\n" + uri[len(REQUEST_URI_PREFIX):]):
        assert sealer_for(codes).open(respelled if respelled.startswith("urn") else REQUEST_URI_PREFIX
                                      + respelled) is None, repr(respelled)
    assert sealer_for(CodeSealer(b"j" * 32)).open(uri) is None
    body = uri[len(REQUEST_URI_PREFIX):]
    tampered = REQUEST_URI_PREFIX + body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert sealer_for(codes).open(tampered) is None
    assert sealer_for(codes).open("urn:other:" + body) is None


@pytest.fixture
def app(demo: Tenant, ring: Any, clock: FakeClock) -> falcon.testing.TestClient:
    return app_client(demo, ring, clock)


def _push(app: falcon.testing.TestClient, **params: str) -> falcon.testing.Result:
    value = (DEMO / "secrets" / "portal.secret").read_text().strip()
    basic = base64.b64encode(f"portal:{value}".encode()).decode()
    body = "&".join(f"{k}={v}" for k, v in {**PARAMS, **params}.items())
    return app.simulate_post("/par", body=body, headers={"Authorization": f"Basic {basic}",
                             "Content-Type": "application/x-www-form-urlencoded"})


def test_push_then_authorize_once(app: falcon.testing.TestClient) -> None:
    pushed = _push(app)
    assert pushed.status_code == 201 and pushed.json["expires_in"] == 60
    uri = pushed.json["request_uri"]
    first = app.simulate_get("/authorize", params={"client_id": "portal", "request_uri": uri,
                                                   "scope": "openid email"})
    assert first.status_code in (302, 303) and first.headers["Location"].startswith("/login")
    second = app.simulate_get("/authorize", params={"client_id": "portal", "request_uri": uri})
    assert second.status_code == 400 and "invalid_request_uri" in second.text


def test_an_unusable_pushed_request_is_a_json_error(app: falcon.testing.TestClient) -> None:
    resp = _push(app, response_type="token")
    assert resp.status_code == 400 and resp.json["error"] == "unsupported_response_type"
    resp = _push(app, client_id="docs")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"


def test_request_uri_lifetime_is_the_tenants(demo: Tenant, ring: Any, clock: FakeClock) -> None:
    tenant = Tenant(demo.directory, replace(demo.settings, par=ParSettings(request_uri_lifetime=10)),
                    demo.clients, demo.users, demo.policies, demo.policy_files)
    app = app_client(tenant, ring, clock)
    pushed = _push(app)
    assert pushed.json["expires_in"] == 10
    clock.now += 10
    late = app.simulate_get("/authorize", params={"client_id": "portal",
                                                  "request_uri": pushed.json["request_uri"]})
    assert late.status_code == 400 and "invalid_request_uri" in late.text
