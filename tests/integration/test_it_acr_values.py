"""Requested acr_values over HTTP (issue 13; the Transmit SSO seed, OIDC Core §3.1.2.1).

Enforced by default: a silent sign-in must reach a requested level, and the
interactive flow steps up to the strongest requested level the user can reach.
``acr_values: {requested: voluntary}`` keeps the old behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from live_op import BrowserAgent, LiveOP, page_kind, with_issuer

from policy_sso.tenant import Tenant

LOA1, LOA2, LOA3 = (f"urn:policy-sso:loa:{i}" for i in (1, 2, 3))


def acr_of(op: LiveOP, client_id: str, code: str) -> str:
    return op.verify_id_token(op.exchange(client_id, code)["id_token"], client_id)["acr"]


def test_step_up_from_loa1_to_loa2_through_the_totp_page(op: LiveOP, browser: BrowserAgent) -> None:
    first = browser.sign_in("portal")
    assert acr_of(op, "portal", first.params["code"]) == LOA1

    # silently, a password-only session is below the requested level: refused, with the reason
    refused = browser.silent("portal", acr_values=LOA2)
    assert (refused.error, refused.codes) == ("login_required", ["acr_insufficient"])

    # interactively, the hosted pages ask for what loa:2 needs: the one-time code
    page = browser.follow(browser.authorize_request("portal", acr_values=LOA2))
    assert page_kind(page) == "otp"
    answer = browser.interact(page)
    assert acr_of(op, "portal", answer.params["code"]) == LOA2
    assert "code" in browser.silent("portal", acr_values=LOA2).params


def test_the_strongest_requested_level_the_user_can_reach(op: LiveOP, new_browser) -> None:
    alice: BrowserAgent = new_browser()
    alice.sign_in("portal")
    # loa:3 needs a hardware key no page offers; loa:2 is reachable with alice's TOTP
    page = alice.follow(alice.authorize_request("portal", acr_values=f"{LOA3} {LOA2} {LOA1}"))
    assert page_kind(page) == "otp"
    assert acr_of(op, "portal", alice.interact(page).params["code"]) == LOA2

    # bob has no second factor: the strongest level he can reach is loa:1, with no step-up
    bob: BrowserAgent = new_browser()
    bob.sign_in("portal", "bob")
    answer = bob.follow(bob.authorize_request("portal", acr_values=f"{LOA2} {LOA1}"))
    assert acr_of(op, "portal", answer.params["code"]) == LOA1
    # … but a request for loa:2 alone cannot be met: the client hears the policy's error
    refused = bob.interact(bob.authorize_request("portal", acr_values=LOA2), "bob")
    assert (refused.error, refused.codes) == ("login_required", ["acr_insufficient"])


def test_prompt_none_uses_the_policys_unmet_error(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("payments-web")  # MFA: loa:2
    refused = browser.silent("payments-web", acr_values=LOA3, scope="openid")
    assert refused.error == "interaction_required"  # payments: on_unmet interaction_required
    assert "acr_insufficient" in refused.codes


def test_a_conformance_style_request_with_acr_values_succeeds_interactively(op: LiveOP,
                                                                             browser: BrowserAgent) -> None:
    # the OpenID conformance suite sends acr_values the provider may not know ("1 2")
    answer = browser.sign_in("portal", acr_values="1 2")
    assert "code" in answer.params, answer.params
    assert acr_of(op, "portal", answer.params["code"]) == LOA1
    answer = browser.interact(browser.authorize_request("portal", acr_values=f"{LOA1} {LOA2}",
                                                        prompt="login"))
    assert "code" in answer.params, answer.params
    assert acr_of(op, "portal", answer.params["code"]) == LOA2  # the strongest reachable level


class TestVoluntary:
    @pytest.fixture
    def tenant_for(self, demo_tenant: Tenant) -> Callable[[str], Tenant]:
        def voluntary(url: str) -> Tenant:
            served = with_issuer(demo_tenant, url)
            return Tenant(served.directory, replace(served.settings, acr_values_requested="voluntary"),
                          served.clients, served.users, served.policies, served.policy_files)
        return voluntary

    def test_voluntary_mode_returns_the_lower_acr(self, op: LiveOP, browser: BrowserAgent) -> None:
        browser.sign_in("portal")
        answer = browser.silent("portal", acr_values=LOA2)
        assert "code" in answer.params, answer.params
        assert acr_of(op, "portal", answer.params["code"]) == LOA1
        interactive = browser.interact(browser.authorize_request("portal", acr_values=LOA2))
        assert acr_of(op, "portal", interactive.params["code"]) == LOA1
