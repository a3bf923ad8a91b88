"""A fresh authentication counts only its own factors (OIDC Core §3.1.2.1 and §2), over HTTP.

Alice signs in with her password and her TOTP code. A minute and a half
later an app demands a fresh authentication (``prompt=login``,
``max_age=0``, a ``max_age`` her sign-in is older than) and needs a second
factor: her earlier code does not count, so the hosted pages ask for the
password and then for a code again, and the tokens' ``auth_time``, ``acr``
and ``amr`` describe that sign-in. When the app needs one factor, the
password alone is the fresh sign-in and the tokens say so. A ``max_age`` the
session still meets counts the whole session: a step-up asks for the code only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from live_op import PASSWORDS, BrowserAgent, Callback, LiveOP, page_kind

LOA1, LOA2 = "urn:policy-sso:loa:1", "urn:policy-sso:loa:2"
ESSENTIAL_LOA2 = json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA2]}}})


def access_claims(op: LiveOP, token: str) -> dict[str, Any]:
    """Return an access token's claims, verified with joserfc against /jwks."""
    keys = KeySet.import_key_set(requests.get(f"{op.url}/jwks", timeout=10).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"]).claims)


def password(browser: BrowserAgent, page: Any) -> Any:
    """Return what follows Alice's password on the sign-in page."""
    assert page_kind(page) == "login", page
    return browser.follow(browser.submit(page, {"username": "alice", "password": PASSWORDS["alice"]}))


@pytest.mark.parametrize(("client_id", "params", "wait"), [
    ("portal", {"prompt": "login", "acr_values": LOA2}, 90),
    ("portal", {"max_age": "0", "claims": ESSENTIAL_LOA2}, 90),
    ("portal", {"max_age": "60", "acr_values": LOA2}, 90),
    ("payments-web", {"prompt": "login"}, 90),  # require mfa, require acr loa:2
    ("payments-web", {"max_age": "0"}, 30),
], ids=["prompt_login+acr_values", "max_age_0+essential_acr", "max_age_exceeded+acr_values",
        "prompt_login+require_mfa", "max_age_0+require_mfa"])
def test_a_fresh_authentication_asks_for_the_second_factor_again(
        op: LiveOP, browser: BrowserAgent, client_id: str, params: dict[str, str], wait: int) -> None:
    first = browser.sign_in(client_id, acr_values=LOA2, scope="openid profile")  # password and TOTP code
    assert "code" in first.params, first.params
    op.clock.advance(wait)  # the next TOTP step: the code already spent would be refused

    after_password = password(browser, browser.follow(browser.authorize_request(client_id, **params)))
    assert page_kind(after_password) == "otp"  # the code from before the fresh sign-in does not count
    answer = browser.follow(browser.submit(after_password, {"otp": op.totp()}))
    assert isinstance(answer, Callback) and "code" in answer.params, answer
    tokens = op.exchange(client_id, answer.params["code"])
    claims = op.verify_id_token(tokens["id_token"], client_id)
    assert (claims["acr"], claims["auth_time"]) == (LOA2, op.clock.now)
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"}
    assert access_claims(op, tokens["access_token"])["second_factor_time"] == op.clock.now


@pytest.mark.parametrize("params", [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "60"}],
                         ids=["prompt_login", "max_age_0", "max_age_exceeded"])
def test_a_fresh_password_is_described_as_a_password_alone(op: LiveOP, browser: BrowserAgent,
                                                           params: dict[str, str]) -> None:
    browser.sign_in("portal", acr_values=LOA2)  # password and TOTP code
    op.clock.advance(90)
    answer = browser.interact(browser.authorize_request("portal", **params), otp=False)
    assert "code" in answer.params, answer.params
    tokens = op.exchange("portal", answer.params["code"])
    claims = op.verify_id_token(tokens["id_token"], "portal")
    assert (claims["acr"], claims["amr"], claims["auth_time"]) == (LOA1, ["pwd"], op.clock.now)
    access = access_claims(op, tokens["access_token"])
    assert (access["acr"], access["amr"], access["auth_time"]) == (LOA1, ["pwd"], op.clock.now)
    assert "second_factor_time" not in access

    # the session still holds the code: a request that demands nothing fresh counts it
    silent = browser.silent("portal", acr_values=LOA2)
    assert "code" in silent.params, silent.params
    again = op.verify_id_token(op.exchange("portal", silent.params["code"])["id_token"], "portal")
    assert again["acr"] == LOA2 and set(again["amr"]) == {"pwd", "otp", "mfa"}


def test_a_max_age_the_session_meets_counts_the_earlier_password(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")  # password only
    op.clock.advance(60)
    page = browser.follow(browser.authorize_request("portal", acr_values=LOA2, max_age="300"))
    assert page_kind(page) == "otp"  # the password of a minute ago is within max_age: the code only
    answer = browser.follow(browser.submit(page, {"otp": op.totp()}))
    assert isinstance(answer, Callback) and "code" in answer.params, answer
    claims = op.verify_id_token(op.exchange("portal", answer.params["code"])["id_token"], "portal")
    assert (claims["acr"], claims["auth_time"]) == (LOA2, op.clock.now)
    assert set(claims["amr"]) == {"pwd", "otp", "mfa"}
