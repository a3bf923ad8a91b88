"""The scope a token is granted, said and kept to (RFC 6749 §4.2.2 and §6), over HTTP.

An implicit response names the scope its access token was granted, as /token
does. A refresh that narrows the scope narrows the claims the ``claims``
parameter asked for with it: the new tokens release only what their scope
releases (OIDC Core §5.4-5.5); the same scope, or none, keeps them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from live_op import BrowserAgent, LiveOP, with_issuer

from policy_sso.tenant import Tenant


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    """The demo tenant with a custom claim for Alice (``department``: released by name, under ``profile``)."""
    alice = demo_tenant.users["u-alice"]
    alice = replace(alice, claims={**alice.claims, "department": "Research"})
    users = {**demo_tenant.users, "u-alice": alice}

    def make(url: str) -> Tenant:
        base = with_issuer(demo_tenant, url)
        return Tenant(base.directory, base.settings, base.clients, users, base.policies, base.policy_files)

    return make


def access_claims(op: LiveOP, token: str) -> dict[str, Any]:
    """Return an access token's claims, verified with joserfc against /jwks."""
    keys = KeySet.import_key_set(requests.get(f"{op.url}/jwks", timeout=10).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"]).claims)


def userinfo(op: LiveOP, token: str) -> dict[str, Any]:
    resp = requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize(("asked", "granted"), [("openid profile bogus", "openid profile"),
                                                ("openid profile", "openid profile")],
                         ids=["a_scope_left_out", "as_requested"])
def test_an_implicit_response_names_the_granted_scope(op: LiveOP, browser: BrowserAgent, asked: str,
                                                      granted: str) -> None:
    browser.sign_in("portal")  # a session, and consent to openid profile
    implicit = browser.silent("portal", response_type="id_token token", scope=asked, nonce="n1")
    assert "access_token" in implicit.params, implicit.params
    assert implicit.params["scope"] == granted  # RFC 6749 §4.2.2: required when it differs
    assert access_claims(op, implicit.params["access_token"])["scope"] == granted


def test_a_narrowed_refresh_releases_only_what_its_scope_releases(op: LiveOP, browser: BrowserAgent) -> None:
    claims = {"userinfo": {"email": None, "name": None, "department": None}, "id_token": {"email": None}}
    signed_in = browser.sign_in("portal", scope="openid profile email offline_access",
                                claims=json.dumps(claims))
    issued = op.exchange("portal", signed_in.params["code"])
    assert userinfo(op, issued["access_token"])["department"] == "Research"  # asked for by name

    def refresh(**scope: str) -> dict[str, Any]:
        resp = op.token("portal", grant_type="refresh_token", refresh_token=issued["refresh_token"], **scope)
        assert resp.status_code == 200, resp.text
        issued["refresh_token"] = resp.json()["refresh_token"]
        return resp.json()

    narrowest = refresh(scope="openid")
    assert narrowest["scope"] == "openid"
    assert userinfo(op, narrowest["access_token"]) == {"sub": "u-alice"}
    assert "userinfo_claims" not in access_claims(op, narrowest["access_token"])
    assert "email" not in op.verify_id_token(narrowest["id_token"], "portal")

    # profile kept: the claims it releases, by scope and by name; email's are gone
    profile = refresh(scope="openid profile offline_access")
    released = userinfo(op, profile["access_token"])
    assert released["department"] == "Research" and released["name"] == "Alice Liddell"
    assert "email" not in released
    assert "email" not in op.verify_id_token(profile["id_token"], "portal")

    # the scope originally granted (as when none is named) keeps every claim asked for
    whole = refresh()
    assert set(userinfo(op, whole["access_token"])) >= {"email", "name", "department"}
    assert op.verify_id_token(whole["id_token"], "portal")["email"] == "alice@example.com"
