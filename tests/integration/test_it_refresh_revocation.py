"""A refresh family's access tokens go with it, and a refused refresh does not spend its token, over HTTP.

- RFC 7009 §2.1: revoking a refresh token at ``/revoke`` revokes the access
  tokens issued from its grant (the code's first one and each refresh's):
  ``active: false`` at ``/introspect`` and 401 at ``/userinfo``.
- RFC 9700 §4.14.2: presenting a spent refresh token revokes the family, and
  its access tokens with it (as a reused code already revoked what it issued).
- RFC 6749 §6: a refresh asking for a wider scope is ``invalid_scope`` and
  leaves the refresh token as it was, so the client's corrected retry works
  instead of being taken for reuse.
- Instances sharing a store see a revocation made by any of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP, pkce_pair, serve_op, with_issuer

from policy_sso.tenant import Tenant


def sign_in(op: LiveOP, username: str = "alice") -> dict[str, Any]:
    """Return the tokens a fresh browser gets for ``username`` at the portal (offline_access)."""
    browser = BrowserAgent(op)
    verifier, challenge = pkce_pair()
    cb = browser.interact(browser.authorize_request("portal", scope="openid profile offline_access",
                                                    code_challenge=challenge, code_challenge_method="S256"),
                          username)
    assert cb.error is None, cb.params
    resp = op.token("portal", grant_type="authorization_code", code=cb.params["code"],
                    redirect_uri=REDIRECTS["portal"], code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def refresh(op: LiveOP, refresh_token: str, **form: str) -> requests.Response:
    return op.token("portal", grant_type="refresh_token", refresh_token=refresh_token, **form)


def refreshed(op: LiveOP, refresh_token: str) -> dict[str, Any]:
    resp = refresh(op, refresh_token)
    assert resp.status_code == 200, resp.text
    return resp.json()


def userinfo(op: LiveOP, access_token: str) -> int:
    return requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"},
                        timeout=10).status_code


def active(op: LiveOP, token: str) -> bool:
    resp = op.post_as("portal", "/introspect", token=token)
    assert resp.status_code == 200, resp.text
    return resp.json()["active"]


def works(op: LiveOP, access_token: str) -> bool:
    """Return whether an access token is live at both places a resource server may check it."""
    at_userinfo, introspected = userinfo(op, access_token), active(op, access_token)
    assert (at_userinfo == 200) == introspected, (at_userinfo, introspected)  # never half revoked
    assert at_userinfo in (200, 401)
    return introspected


def revoke(op: LiveOP, token: str) -> None:
    resp = op.post_as("portal", "/revoke", token=token)
    assert resp.status_code == 200, resp.text


def test_revoking_a_refresh_token_revokes_every_access_token_of_its_grant(op: LiveOP) -> None:
    first = sign_in(op)
    op.clock.advance(30)
    second = refreshed(op, first["refresh_token"])
    op.clock.advance(30)
    third = refreshed(op, second["refresh_token"])
    other = sign_in(op)  # the same user and client, another grant
    assert all(works(op, t["access_token"]) for t in (first, second, third, other))

    revoke(op, third["refresh_token"])

    assert not any(works(op, t["access_token"]) for t in (first, second, third))
    assert not active(op, third["refresh_token"])
    refused = refresh(op, third["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    # the other grant is untouched
    assert works(op, other["access_token"]) and active(op, other["refresh_token"])
    assert refresh(op, other["refresh_token"]).status_code == 200


def test_revoking_the_first_refresh_token_revokes_the_codes_access_token(op: LiveOP) -> None:
    tokens = sign_in(op)
    assert works(op, tokens["access_token"])
    revoke(op, tokens["refresh_token"])
    assert not works(op, tokens["access_token"])


def test_refresh_token_reuse_revokes_the_access_tokens_issued_from_the_family(op: LiveOP) -> None:
    first = sign_in(op)
    op.clock.advance(10)
    second = refreshed(op, first["refresh_token"])  # the legitimate holder rotates
    op.clock.advance(10)
    third = refreshed(op, second["refresh_token"])
    bob = sign_in(op, "bob")

    reuse = refresh(op, first["refresh_token"])  # an attacker replays a spent token
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant", reuse.text

    for tokens in (first, second, third):
        assert not works(op, tokens["access_token"])
    assert refresh(op, third["refresh_token"]).json()["error"] == "invalid_grant"
    assert works(op, bob["access_token"]) and refresh(op, bob["refresh_token"]).status_code == 200


def test_a_wider_scope_refresh_leaves_the_refresh_token_usable(op: LiveOP) -> None:
    tokens = sign_in(op)
    wider = refresh(op, tokens["refresh_token"], scope="openid profile offline_access email")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope", wider.text
    assert active(op, tokens["refresh_token"])  # not spent

    # the client's corrected retry is a first use, not a reuse: the grant lives on
    retry = refresh(op, tokens["refresh_token"], scope="openid offline_access")
    assert retry.status_code == 200, retry.text
    assert retry.json()["scope"] == "openid offline_access"
    assert works(op, tokens["access_token"]) and works(op, retry.json()["access_token"])
    following = refreshed(op, retry.json()["refresh_token"])
    assert following["scope"] == "openid profile offline_access"  # a narrower refresh narrows only its own
    # and the spent token is still detected as reused
    assert refresh(op, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert not works(op, following["access_token"])


def test_a_wider_scope_with_another_clients_refresh_token_still_revokes_it(op: LiveOP) -> None:
    tokens = sign_in(op)
    stolen = op.token("docs", grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                      scope="openid profile offline_access email")
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant", stolen.text
    assert not active(op, tokens["refresh_token"]) and not works(op, tokens["access_token"])


@pytest.fixture(params=["sqlite", "redis"])
def two_instances(request: pytest.FixtureRequest, demo_tenant: Tenant, keyring: Any,
                  tmp_path: Path) -> Iterator[tuple[LiveOP, LiveOP]]:
    """Two servers on one store (each with its own issuer URL and the demo's keys)."""
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
    else:
        url = f"sqlite:///{tmp_path}/shared.db"
    with serve_op(lambda u: with_issuer(demo_tenant, u), url, keyring) as a, \
            serve_op(lambda u: with_issuer(demo_tenant, u), url, keyring) as b:
        yield a, b


def test_a_revocation_at_one_instance_holds_at_another(two_instances: tuple[LiveOP, LiveOP]) -> None:
    a, b = two_instances
    first = sign_in(a)
    second = refreshed(a, first["refresh_token"])
    # the other instance judges a's tokens (its own issuer is another URL: only the store is shared)
    revoke(b, second["refresh_token"])
    assert not works(a, first["access_token"]) and not works(a, second["access_token"])

    again = sign_in(b)
    later = refreshed(b, again["refresh_token"])
    assert refresh(a, again["refresh_token"]).json()["error"] == "invalid_grant"  # reuse, at a
    assert not works(b, again["access_token"]) and not works(b, later["access_token"])
