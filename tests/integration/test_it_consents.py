"""Consent lifetime and the admin consents API over real HTTP (waitress, SQLite, fake clock; issue 19).

The story: Alice signs in at Docs, whose policy (in this tenant's copy) says
``require consent "openid", "profile" for 1h``. Silent sign-in works for the
hour; a second later it is refused with consent_required; the interactive
retry shows the consent page again (no login: the session is alive), the new
grant replaces the old, and silent sign-in works again. An admin lists her
consents with their grant and expiry times and withdraws them, one client or all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from live_op import BrowserAgent, LiveOP, page_kind, tenant_yaml_at

from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant

ADMIN = "admin-token-for-consent-tests-0123456789"
HOUR = 3600


@pytest.fixture
def tenant_for(tenant_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], TenantHolder]:
    """The demo tenant's copy with a one-hour consent lifetime on Docs, served at the live URL."""
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)

    def build(url: str) -> TenantHolder:
        (tenant_dir / "tenant.yaml").write_text(tenant_yaml_at(tenant_dir, url))
        policy = tenant_dir / "docs.policy"
        text = policy.read_text()
        assert '  require amr any_of "pwd", "wia"\n' in text
        policy.write_text(text.replace('  require amr any_of "pwd", "wia"\n',
                                       '  require amr any_of "pwd", "wia"\n'
                                       '  require consent "openid", "profile" for 1h\n', 1))
        return TenantHolder(load_tenant(tenant_dir))

    return build


def admin(op: LiveOP, method: str, path: str, token: str | None = ADMIN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.request(method, f"{op.url}/admin/v1/users{path}", headers=headers, timeout=10)


def docs_grant(op: LiveOP) -> dict:
    listed = admin(op, "GET", "/u-alice/consents")
    assert listed.status_code == 200, listed.text
    return next(c for c in listed.json()["consents"] if c["client_id"] == "docs")


# --- re-consent after expiry ---------------------------------------------------------------

def test_an_expired_consent_is_asked_again_and_the_new_grant_replaces_the_old(op: LiveOP,
                                                                           browser: BrowserAgent) -> None:
    signed_in_at = op.clock.now
    assert "code" in browser.sign_in("docs").params
    assert docs_grant(op)["granted_at"] == signed_in_at
    assert docs_grant(op)["expires_at"] == signed_in_at + HOUR + 1  # the first second it no longer counts

    op.clock.advance(HOUR)  # exactly an hour old: still counts
    assert "code" in browser.silent("docs").params

    op.clock.advance(1)  # one second later: expired
    refused = browser.silent("docs")
    assert refused.params["error"] == "consent_required"
    assert "consent_missing" in refused.params["error_description"]

    page = browser.follow(browser.authorize_request("docs"))
    assert page_kind(page) == "consent"  # the session is alive: no login, only the consent page
    answer = browser.interact(page)
    assert "code" in answer.params
    grant = docs_grant(op)
    assert grant["granted_at"] == op.clock.now == signed_in_at + HOUR + 1
    assert grant["expired"] is False
    assert "code" in browser.silent("docs").params


# --- the admin consents API ----------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/u-alice/consents"), ("DELETE", "/u-alice/consents"),
                                         ("DELETE", "/u-alice/consents/docs")])
@pytest.mark.parametrize("token", [None, "wrong"], ids=["missing", "wrong"])
def test_the_consents_api_needs_the_admin_token(op: LiveOP, browser: BrowserAgent, method: str, path: str,
                                                token: str | None) -> None:
    browser.sign_in("docs")
    refused = admin(op, method, path, token)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token" and refused.json()["error_description"]
    assert docs_grant(op)["scopes"] == ["openid", "profile"]  # nothing was withdrawn


def test_an_admin_lists_a_users_consents_with_their_times(op: LiveOP, new_browser) -> None:
    start = op.clock.now
    new_browser().sign_in("docs")
    op.clock.advance(60)
    new_browser().sign_in("portal")  # another session: the list spans them
    listed = admin(op, "GET", "/u-alice/consents").json()
    assert listed["sub"] == "u-alice"
    by_client = {c["client_id"]: c for c in listed["consents"]}
    assert set(by_client) == {"docs", "portal"}
    assert by_client["docs"]["scopes"] == ["openid", "profile"]
    assert by_client["docs"]["expires_at"] == start + HOUR + 1
    assert by_client["portal"]["granted_at"] == start + 60
    assert by_client["portal"]["expires_at"] is None  # portal's policy sets no lifetime
    op.clock.advance(HOUR)  # docs' grant is now 1h 1m old
    assert docs_grant(op)["expired"] is True


def test_an_admin_withdraws_one_clients_consent_in_every_session(op: LiveOP, new_browser) -> None:
    first, second = new_browser(), new_browser()
    first.sign_in("docs")
    second.sign_in("docs")
    second.sign_in("portal")
    withdrawn = admin(op, "DELETE", "/u-alice/consents/docs")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json() == {"sub": "u-alice", "withdrawn": {"docs": ["openid", "profile"]}}
    for browser in (first, second):
        assert browser.silent("docs").params["error"] == "consent_required"
    assert "code" in second.silent("portal").params  # the other client's consent stays
    clients = [c["client_id"] for c in admin(op, "GET", "/u-alice/consents").json()["consents"]]
    assert clients == ["portal"]
    again = admin(op, "DELETE", "/u-alice/consents/docs")
    assert again.status_code == 404 and again.json()["error"] == "consent_not_found"


def test_an_admin_withdraws_all_of_a_users_consents(op: LiveOP, new_browser) -> None:
    browser = new_browser()
    browser.sign_in("docs")
    browser.sign_in("portal")
    withdrawn = admin(op, "DELETE", "/u-alice/consents")
    assert withdrawn.status_code == 200
    assert set(withdrawn.json()["withdrawn"]) == {"docs", "portal"}
    assert admin(op, "GET", "/u-alice/consents").json()["consents"] == []
    assert browser.silent("docs").params["error"] == "consent_required"
    assert browser.silent("portal").params["error"] == "consent_required"


def test_an_unknown_user_is_404_not_an_empty_list(op: LiveOP) -> None:
    for method, path in (("GET", "/u-nobody/consents"), ("DELETE", "/u-nobody/consents"),
                         ("DELETE", "/u-nobody/consents/docs")):
        response = admin(op, method, path)
        assert response.status_code == 404 and response.json()["error"] == "user_not_found"


def test_the_account_page_shows_when_a_consent_expires(op: LiveOP, browser: BrowserAgent) -> None:
    from datetime import UTC, datetime

    browser.sign_in("docs")
    browser.sign_in("portal")
    expires = datetime.fromtimestamp(op.clock.now + HOUR + 1, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    page = browser.account()
    assert page.status_code == 200
    rows = {row.split("</td>")[0].rsplit(">", 1)[-1]: row for row in page.text.split("<tr>")[1:]
            if "withdraw" in row}
    assert expires in rows["Documentation"] and "Expired" not in rows["Documentation"]
    assert "UTC" not in next(r for name, r in rows.items() if name != "Documentation")  # no lifetime
    op.clock.advance(HOUR + 1)
    assert f"Expired {expires}" in browser.account().text


def test_a_withdrawn_consent_takes_back_the_clients_tokens(op: LiveOP, browser: BrowserAgent) -> None:
    """A refresh token outlives the session: withdrawing consent must end it too (as Hydra's revocation)."""
    signed_in = browser.sign_in("portal", scope="openid profile offline_access")
    issued = op.exchange("portal", signed_in.params["code"])
    assert "refresh_token" in issued
    op.clock.advance(1)
    assert admin(op, "DELETE", "/u-alice/consents/portal").status_code == 200
    refreshed = op.token("portal", grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    userinfo = requests.get(f"{op.url}/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert userinfo.status_code == 401
    assert op.post_as("portal", "/introspect", token=issued["refresh_token"]).json() == {"active": False}

    # consent given again (the same second as the withdrawal): the new tokens work
    page = browser.follow(browser.authorize_request("portal", scope="openid profile offline_access"))
    assert page_kind(page) == "consent"
    again = op.exchange("portal", browser.interact(page).params["code"])
    refreshed = op.token("portal", grant_type="refresh_token", refresh_token=again["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    userinfo = requests.get(f"{op.url}/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert userinfo.status_code == 200
