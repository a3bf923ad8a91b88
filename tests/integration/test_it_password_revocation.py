"""A changed password revokes what the old one granted, over real HTTP (issue 14, acceptance 5).

Alice signs in at the portal and holds a refresh token and an access token.
Her password is then reset by the admin API, or changed in users.yaml and
reloaded: the old refresh token gets ``invalid_grant``, the old access token a
401 at /userinfo and ``active: false`` at /introspect, and a code issued before
is refused. What she gets by signing in with the new password works, and Bob's
tokens are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP, pkce_pair, tenant_yaml_at

from policy_sso.credentials import hash_password
from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant

ADMIN = "admin-token-for-tests-0123456789"
NEW_PASSWORD = "through the looking-glass"


@pytest.fixture
def tenant_for(tenant_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], TenantHolder]:
    """A copy of the demo tenant on disk (password changes touch only the copy), served at ``url``."""
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)

    def build(url: str) -> TenantHolder:
        (tenant_dir / "tenant.yaml").write_text(tenant_yaml_at(tenant_dir, url))
        return TenantHolder(load_tenant(tenant_dir))

    return build


def sign_in(op: LiveOP, username: str = "alice", password: str | None = None) -> dict:
    """Return the tokens a fresh browser gets for ``username`` at the portal (offline_access)."""
    browser = BrowserAgent(op)
    verifier, challenge = pkce_pair()
    cb = browser.interact(browser.authorize_request("portal", scope="openid profile offline_access",
                                                    code_challenge=challenge, code_challenge_method="S256"),
                          username, password=password)
    assert cb.error is None, cb.params
    resp = op.token("portal", grant_type="authorization_code", code=cb.params["code"],
                    redirect_uri=REDIRECTS["portal"], code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def pending_code(op: LiveOP) -> tuple[str, str]:
    """Return an authorization code (and its PKCE verifier) issued to Alice and not yet redeemed."""
    browser = BrowserAgent(op)
    verifier, challenge = pkce_pair()
    cb = browser.sign_in("portal", code_challenge=challenge, code_challenge_method="S256")
    assert cb.error is None, cb.params
    return cb.params["code"], verifier


def userinfo(op: LiveOP, access_token: str) -> requests.Response:
    return requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def active(op: LiveOP, token: str) -> bool:
    resp = op.post_as("portal", "/introspect", token=token)
    assert resp.status_code == 200, resp.text
    return resp.json()["active"]


def refresh(op: LiveOP, refresh_token: str) -> requests.Response:
    return op.token("portal", grant_type="refresh_token", refresh_token=refresh_token)


def reset_by_admin(op: LiveOP, tenant_dir: Path) -> None:
    resp = requests.post(f"{op.url}/admin/v1/users/u-alice/password", json={"password": NEW_PASSWORD},
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    assert resp.status_code == 200, resp.text


def changed_in_users_yaml(op: LiveOP, tenant_dir: Path) -> None:
    users = tenant_dir / "users.yaml"
    old = load_tenant(tenant_dir).users["u-alice"].password_hash
    users.write_text(users.read_text().replace(old, hash_password(NEW_PASSWORD)))
    resp = requests.post(f"{op.url}/admin/v1/policies/reload", headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=30)
    assert resp.status_code == 200 and resp.json()["applied"] is True, resp.text


@pytest.mark.parametrize("change", [reset_by_admin, changed_in_users_yaml],
                         ids=["admin_reset", "users_yaml_reloaded"])
def test_a_password_change_revokes_the_old_tokens(op: LiveOP, tenant_dir: Path, change) -> None:
    old = sign_in(op)
    bob = sign_in(op, "bob")
    code, verifier = pending_code(op)
    assert userinfo(op, old["access_token"]).status_code == 200
    assert active(op, old["access_token"]) and active(op, old["refresh_token"])

    op.clock.advance(5)
    change(op, tenant_dir)

    refused = refresh(op, old["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    denied = userinfo(op, old["access_token"])
    assert denied.status_code == 401 and 'error="invalid_token"' in denied.headers["WWW-Authenticate"]
    assert not active(op, old["access_token"])
    assert not active(op, old["refresh_token"])
    late = op.token("portal", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["portal"],
                    code_verifier=verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant", late.text

    # signing in again at once, with the new password, gives tokens that work
    new = sign_in(op, password=NEW_PASSWORD)
    assert userinfo(op, new["access_token"]).status_code == 200
    assert active(op, new["access_token"])
    assert refresh(op, new["refresh_token"]).status_code == 200
    # another user's tokens are untouched
    assert userinfo(op, bob["access_token"]).status_code == 200
    assert refresh(op, bob["refresh_token"]).status_code == 200

