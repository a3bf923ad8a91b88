"""A code redeemed twice at once: the second redemption revokes everything the first issues.

RFC 9700 §4.5.3 (RFC 6749 §4.1.2): tokens issued from a code that is used
again are revoked. When the second redemption runs while the first is still
issuing, its family revocation finds no refresh token yet; the first, once
its refresh token is stored, sees its access token revoked and revokes the
family itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy_sso.errors import InvalidGrant
from policy_sso.oidc.codes import CodeGrant
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.provider import Provider
from policy_sso.oidc.token_endpoint import token_request
from policy_sso.sessions.store import REVOKED_ACCESS_TOKENS, open_store
from policy_sso.tenant import Tenant

NOW = 1_800_000_000
REDIRECT = "http://127.0.0.1:9001/callback"


def _provider(demo: Tenant, ring: KeyRing) -> Provider:
    return Provider.build(demo, open_store("memory://", demo.settings.lifetime), ring)


def _code(p: Provider) -> tuple[str, dict[str, str]]:
    grant = Grant("u-alice", "portal", "openid offline_access", auth_time=NOW - 5)
    code = p.codes.seal(CodeGrant(grant, REDIRECT, None, NOW + 60))
    return code, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}


def _redeem(p: Provider, form: dict[str, str]) -> dict[str, Any]:
    client = p.client("portal")
    assert client is not None
    return token_request(p, client, form, NOW)


def _while_storing_the_refresh_token(p: Provider, meanwhile: Callable[[], None]) -> list[str]:
    """Run ``meanwhile`` just before the store writes a refresh token; return the keys written."""
    put_refresh, written = p.store.put_refresh, []

    def racing(token_key: str, *args: Any, **kwargs: Any) -> None:
        if not written:
            meanwhile()
        written.append(token_key)
        put_refresh(token_key, *args, **kwargs)

    p.store.put_refresh = racing  # type: ignore[method-assign]
    return written


def test_a_reuse_during_the_first_redemption_revokes_its_refresh_token(demo: Tenant, ring: KeyRing) -> None:
    p = _provider(demo, ring)
    code, form = _code(p)
    reuse: list[Exception] = []

    def second() -> None:
        with pytest.raises(InvalidGrant, match="already used") as refused:
            _redeem(p, form)
        reuse.append(refused.value)

    written = _while_storing_the_refresh_token(p, second)
    with pytest.raises(InvalidGrant, match="already used"):
        _redeem(p, form)
    assert reuse and written  # the reuse ran, and the first redemption stored its refresh token
    assert p.store.get_refresh(written[0], NOW + 1) is None  # revoked: it cannot be used
    jti, _ = p.codes.issued(code)
    assert p.store.is_jti_used(REVOKED_ACCESS_TOKENS, jti, NOW + 1)  # and so is the access token


def test_a_single_redemption_keeps_its_refresh_token(demo: Tenant, ring: KeyRing) -> None:
    p = _provider(demo, ring)
    _, form = _code(p)
    written = _while_storing_the_refresh_token(p, lambda: None)
    tokens = _redeem(p, form)
    assert tokens["refresh_token"] and p.store.get_refresh(written[0], NOW + 1) is not None
