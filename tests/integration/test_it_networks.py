"""Where the user is decides (issue 19, acceptance 2): ``when not network in office`` over real HTTP.

The portal's policy here asks a second factor outside the office network
(127.0.0.1 and 10.0.0.0/8). Requests come straight from 127.0.0.1 (inside),
or through a reverse proxy at 127.0.0.2 that the tenant trusts, whose
``X-Forwarded-For`` names the user's address; a peer the tenant does not
trust (127.0.0.3) cannot move itself into the office with that header.
Client sockets are bound to other loopback addresses to be those peers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from live_op import PASSWORDS, BrowserAgent, LiveOP, page_kind, with_settings
from support import FromAddress

from policy_sso.parse.dsl import parse_dsl
from policy_sso.tenant import Tenant

DIRECT, PROXY, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
OUTSIDE, INSIDE = "203.0.113.5", "10.1.2.3"

PORTAL = """
policy "portal" {
  clients "portal", "portal-backend"
  require amr any_of "pwd", "wia", "hwk"
  when not network in office {
    require mfa
  }
}
"""


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    """The demo tenant whose portal asks a second factor outside the office, behind a proxy at 127.0.0.2."""
    policies, errors = parse_dsl(PORTAL, "portal.policy")
    assert errors == []

    def served(url: str) -> Tenant:
        t = with_settings(demo_tenant, issuer=url, trusted_proxies=(f"{PROXY}/32",),
                          networks={"office": (f"{DIRECT}/32", "10.0.0.0/8")})
        return Tenant(t.directory, t.settings, t.clients, t.users, {**t.policies, "portal": policies[0]},
                      t.policy_files)

    return served


def from_address(browser: BrowserAgent, address: str, forwarded_for: str | None = None) -> BrowserAgent:
    """Return ``browser`` (its cookies kept) now connecting from ``address``, with that X-Forwarded-For."""
    browser.http.mount("http://", FromAddress(address))
    browser.http.headers.pop("X-Forwarded-For", None)
    if forwarded_for is not None:
        browser.http.headers["X-Forwarded-For"] = forwarded_for
    return browser


def silent(browser: BrowserAgent, address: str, forwarded_for: str | None = None) -> tuple[str | None, list]:
    result = from_address(browser, address, forwarded_for).silent("portal")
    return result.error, result.codes


def test_the_office_network_decides_by_the_address_the_proxy_vouches_for(op: LiveOP,
                                                                         browser: BrowserAgent) -> None:
    # alice signs in at the office with her password only
    assert from_address(browser, DIRECT).sign_in("portal").error is None

    assert silent(browser, DIRECT) == (None, [])  # straight from 127.0.0.1: inside the office
    # through the trusted proxy from the internet: outside, so the second factor is missing
    assert silent(browser, PROXY, OUTSIDE) == ("login_required", ["mfa_required"])
    # through the trusted proxy from an office address: inside again
    assert silent(browser, PROXY, f"{OUTSIDE}, {INSIDE}") == (None, [])
    # a trusted proxy that names no client: unknown, so the office block applies (fail closed)
    assert silent(browser, PROXY) == ("login_required", ["mfa_required"])


def test_an_untrusted_peers_forwarded_header_is_ignored(op: LiveOP, browser: BrowserAgent) -> None:
    assert from_address(browser, DIRECT).sign_in("portal").error is None
    # 127.0.0.1 is no proxy: its claim to forward an outside address changes nothing
    assert silent(browser, DIRECT, OUTSIDE) == (None, [])
    # 127.0.0.3 is outside and no proxy: claiming an office address does not let it in
    assert silent(browser, STRANGER, INSIDE) == ("login_required", ["mfa_required"])
    assert silent(browser, STRANGER) == ("login_required", ["mfa_required"])


def test_the_backend_session_api_sees_the_forwarded_address(op: LiveOP) -> None:
    token = op.client_token("portal-backend")

    def call(path: str, body: dict, address: str, forwarded_for: str | None = None) -> requests.Response:
        http = requests.Session()
        http.mount("http://", FromAddress(address))
        headers = {"Authorization": f"Bearer {token}"}
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        return http.post(f"{op.url}{path}", json=body, headers=headers, timeout=10)

    # the app's server calling directly says nothing of where its user is: unknown, the block applies
    alice = {"username": "alice", "password": PASSWORDS["alice"]}
    direct = call("/v1/auth/password", alice, DIRECT)
    assert "access_token" not in direct.json(), direct.text
    signed_in = call("/v1/auth/password", alice, PROXY, INSIDE)
    assert signed_in.status_code == 200, signed_in.text
    session_id = signed_in.json()["session_id"]
    assert "access_token" in signed_in.json()  # an app that is a trusted proxy vouches: in the office

    inside = call("/v1/auth/session/authenticate", {"session_id": session_id}, PROXY, INSIDE)
    assert inside.status_code == 200, inside.text
    outside = call("/v1/auth/session/authenticate", {"session_id": session_id}, PROXY, OUTSIDE)
    assert outside.status_code == 400
    body = outside.json()
    assert (body["error"], [r["code"] for r in body["reasons"]]) == ("login_required", ["mfa_required"])
    # the reason says which address put the network block in force, and where the block is
    assert f"client address {OUTSIDE} not in office" in body["reasons"][0]["observed"]
    assert "portal.policy:5" in body["reasons"][0]["observed"]
    for forwarded in (INSIDE, None):  # not a trusted proxy: its header is ignored, and its own address too
        untrusted = call("/v1/auth/session/authenticate", {"session_id": session_id}, DIRECT, forwarded)
        assert untrusted.status_code == 400, untrusted.text
        assert "client address unknown" in untrusted.json()["reasons"][0]["observed"]


def test_the_sign_in_pages_ask_for_the_second_factor_only_outside(op: LiveOP, new_browser) -> None:
    outside = from_address(new_browser(), PROXY, OUTSIDE)
    page = outside.follow(outside.authorize_request("portal"))
    assert page_kind(page) == "login"
    page = outside.follow(outside.submit(page, {"username": "alice", "password": PASSWORDS["alice"]}))
    assert page_kind(page) == "otp"  # the hosted pages decide on the forwarded address too
    assert outside.interact(page).error is None

    inside = from_address(new_browser(), PROXY, INSIDE)
    page = inside.follow(inside.authorize_request("portal"))
    assert page_kind(page) == "login"
    result = inside.interact(page, otp=False)  # no second-factor page is shown
    assert result.error is None and result.params.get("code")
