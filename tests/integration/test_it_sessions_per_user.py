"""A user's sessions are bounded: the oldest ends first, with back-channel logout (issue 14).

With ``session.max_per_user: 2``, Alice signs in on three browsers. The first
browser's session ends when the third is made: its client receives a logout
token for that session's ``sid``, and its next silent sign-in is refused;
the two newer browsers still sign in silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from backend_support import LogoutReceiver, verified_logout_token
from live_op import BrowserAgent, LiveOP, copy_demo, tenant_yaml_at

from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant


@pytest.fixture
def tenant_for(tmp_path: Path, receiver: LogoutReceiver) -> Callable[[str], TenantHolder]:
    """The demo tenant with at most two sessions a user, and portal listening for logout tokens."""
    directory = copy_demo(tmp_path / "tenant")

    def build(url: str) -> TenantHolder:
        text = tenant_yaml_at(directory, url)
        (directory / "tenant.yaml").write_text(text.replace("session:\n", "session:\n  max_per_user: 2\n", 1))
        clients = directory / "clients.yaml"
        clients.write_text(clients.read_text().replace(
            "    post_logout_redirect_uris: [http://127.0.0.1:9001/signed-out]\n",
            "    post_logout_redirect_uris: [http://127.0.0.1:9001/signed-out]\n"
            f"    backchannel_logout_uri: {receiver.url}\n", 1))
        tenant = load_tenant(directory)
        assert tenant.settings.store_options.max_sessions_per_user == 2
        return TenantHolder(tenant)

    return build


def test_the_oldest_session_ends_with_back_channel_logout(op: LiveOP, receiver: LogoutReceiver) -> None:
    browsers = [BrowserAgent(op) for _ in range(3)]
    sids = []
    for browser in browsers[:2]:
        assert browser.sign_in("portal").error is None
        sids.append(op.store.get_session(browser.session_cookie, op.clock.now).clients["portal"].sid)
        op.clock.advance(1)
    assert receiver.tokens == []

    assert browsers[2].sign_in("portal").error is None  # the third session: the first one ends
    (token,) = receiver.wait_for(1)
    claims = verified_logout_token(op.url, token)
    assert claims["sub"] == "u-alice" and claims["sid"] == sids[0]
    first = browsers[0].silent("portal")
    assert first.error == "login_required", first.params
    for browser in browsers[1:]:
        assert browser.silent("portal").error is None
    assert len(op.store.sessions_of("u-alice", op.clock.now)) == 2
