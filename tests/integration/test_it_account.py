"""/account over HTTP on a live server: ending a session sends back-channel logout, withdrawing a
consent brings the consent page back, a password change revokes the old grants and ends the other
sessions, and sensitive actions need a recent sign-in (issue 18)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import pyotp
import pytest
import requests
from backend_support import LogoutReceiver, verified_logout_token
from live_op import BrowserAgent, LiveOP, forms_of, page_kind, with_issuer

from policy_sso.tenant import Tenant


@pytest.fixture
def tenant_for(demo_tenant: Tenant, receiver: LogoutReceiver) -> Callable[[str], Tenant]:
    clients = {cid: replace(c, backchannel_logout_uri=receiver.url) if cid == "portal" else c
               for cid, c in demo_tenant.clients.items()}
    return lambda url: with_issuer(replace(demo_tenant, clients=clients), url)


def account(browser: BrowserAgent) -> requests.Response:
    page = browser.account()
    assert page.status_code == 200
    return page


def act(browser: BrowserAgent, action: str, **fields: str) -> requests.Response:
    """Submit the account page's form for ``action`` (the CSRF token from the page)."""
    page = account(browser)
    form = next(f for f in forms_of(page.text) if "csrf_token" in f.fields)
    data = {"csrf_token": form.fields["csrf_token"], "action": action, **fields}
    return browser.http.post(f"{browser.op.url}/account", data=data, allow_redirects=False, timeout=10)


def refresh_token(op: LiveOP, browser: BrowserAgent, client_id: str = "portal") -> str:
    cb = browser.interact(browser.authorize_request(client_id, scope="openid profile offline_access",
                                                    prompt="consent"))
    resp = op.token(client_id, grant_type="authorization_code", code=cb.params["code"],
                    redirect_uri="http://127.0.0.1:9001/callback")
    assert resp.status_code == 200, resp.text
    return resp.json()["refresh_token"]


def test_ending_a_session_from_another_browser_sends_back_channel_logout(
        op: LiveOP, browser: BrowserAgent, new_browser: Callable[[], BrowserAgent],
        receiver: LogoutReceiver) -> None:
    laptop, phone = browser, new_browser()
    laptop.sign_in("portal")
    phone.sign_in("docs")
    other = next(s for s in op.store.sessions_of("u-alice", op.clock.now) if "portal" in s.clients)
    sid = other.clients["portal"].sid
    assert act(phone, "end_session", session=other.id).status_code == 303
    assert op.store.get_session(other.id, op.clock.now) is None
    (token,) = receiver.wait_for(1)
    claims = verified_logout_token(op.url, token)
    assert (claims["sub"], claims["sid"], claims["aud"]) == ("u-alice", sid, "portal")
    assert laptop.silent("portal").error == "login_required"


def test_a_session_of_another_user_cannot_be_ended(op: LiveOP, browser: BrowserAgent,
                                                   new_browser: Callable[[], BrowserAgent]) -> None:
    bob = new_browser()
    bob.sign_in("portal", "bob")
    browser.sign_in("portal")
    (bobs,) = op.store.sessions_of("u-bob", op.clock.now)
    refused = act(browser, "end_session", session=bobs.id)
    assert op.store.get_session(bobs.id, op.clock.now) is not None
    # the page says nothing was ended, as it says for a session of hers already gone (a page left open)
    assert refused.status_code == 303 and refused.headers["Location"] == "/account?done=session_gone"
    assert "That session had already ended." in browser.get(refused.headers["Location"]).text


def test_withdrawn_consent_is_asked_again(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    assert browser.silent("portal").params.get("code")
    assert act(browser, "withdraw", client="portal").status_code == 303
    assert browser.silent("portal").error == "consent_required"
    again = act(browser, "withdraw", client="portal")  # the same button on a page left open
    assert again.headers["Location"] == "/account?done=consent_gone"
    assert "That app no longer had any access to withdraw." in browser.get(again.headers["Location"]).text
    assert page_kind(browser.follow(browser.authorize_request("portal"))) == "consent"


def test_password_change_revokes_old_grants_and_ends_other_sessions(
        op: LiveOP, browser: BrowserAgent, new_browser: Callable[[], BrowserAgent]) -> None:
    other = new_browser()
    old_refresh = refresh_token(op, other)
    browser.sign_in("portal")
    op.clock.advance(5)
    moved = act(browser, "password", current="wonderland", new="looking-glass")
    assert moved.status_code == 303 and "password_changed" in moved.headers["Location"]
    refused = op.token("portal", grant_type="refresh_token", refresh_token=old_refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert other.silent("portal").error == "login_required"  # the other session ended
    assert browser.silent("portal").params.get("code")  # this one goes on, re-authenticated
    fresh = new_browser()
    wrong = fresh.submit(fresh.follow(fresh.authorize_request("portal")),
                         {"username": "alice", "password": "wonderland"})
    assert "Wrong username or password" in wrong.text
    assert fresh.sign_in_with("portal", "alice", "looking-glass").params.get("code")


def test_a_wrong_current_password_changes_nothing(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    page = act(browser, "password", current="nope", new="looking-glass")
    assert page.status_code == 200 and "current password is not right" in page.text
    assert op.store.credentials_of("u-alice") == {}


def test_sensitive_actions_need_a_recent_sign_in_and_a_csrf_token(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal")
    account(browser)  # her authenticator app opens the page
    op.clock.advance(3600)  # past enrolment.within (10m) but within the session's lifetime
    page = act(browser, "password", current="wonderland", new="looking-glass")
    assert "enter your password again" in page.text and op.store.credentials_of("u-alice") == {}
    forged = browser.http.post(f"{op.url}/account", data={"action": "withdraw", "client": "portal",
                                                          "csrf_token": "x"}, timeout=10)
    assert forged.status_code == 403


def enrol_totp(browser: BrowserAgent) -> str:
    """Set up an authenticator app from the account page as a user would; return its secret."""
    page = browser.get("/enrol/totp")
    assert page.status_code == 200, page.text
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)
    form = next(f for f in forms_of(page.text) if "pending" in f.fields)
    done = browser.http.post(f"{browser.op.url}/enrol/totp", allow_redirects=False, timeout=10, data={
        **form.fields, "otp": pyotp.TOTP(secret).at(browser.op.clock.now)})
    assert done.status_code == 303 and "totp_enrolled" in done.headers["Location"], done.text
    return secret


def test_passkeys_on_an_ip_address_issuer_are_refused_with_the_reason(op: LiveOP,
                                                                      browser: BrowserAgent) -> None:
    """WebAuthn needs a host name as the RP ID: signing in again would not help, so the page says why."""
    browser.sign_in("portal", "bob")
    assert browser.get("/enrol/totp").status_code == 200  # bob may enrol a factor now
    refused = browser.get("/enrol/passkey")  # this provider's issuer is http://127.0.0.1:PORT
    assert refused.status_code == 403 and "host name" in refused.text, refused.text


def test_the_last_second_factor_is_kept(op: LiveOP, browser: BrowserAgent) -> None:
    browser.sign_in("portal", "bob")
    enrol_totp(browser)  # bob's first factor: his password was enough for that
    page = act(browser, "remove_factor", factor="totp")
    assert page.status_code == 200 and "totp" in op.store.credentials_of("u-bob")
    # the apps whose policy needs a second factor (require mfa) are named
    needed = "This factor cannot be removed: Back office, Payments, Team app cannot be signed in to"
    assert needed in page.text
    op.store.put_credential("u-bob", "pk:abc", {"kind": "passkey", "label": "Laptop"})
    act(browser, "remove_factor", factor="totp")
    assert set(op.store.credentials_of("u-bob")) == {"pk:abc"}


def test_a_password_alone_does_not_change_a_users_second_factor(op: LiveOP, browser: BrowserAgent) -> None:
    """Someone who knows alice's password must not replace her authenticator app with their own."""
    attacker = browser
    page = attacker.get("/account")
    form = next(f for f in forms_of(page.text) if f.fields.get("action") == "login")
    attacker.http.post(f"{op.url}/account", timeout=10, data={
        **form.fields, "username": "alice", "password": "wonderland"})
    page = attacker.get("/account")
    assert "confirm with your second factor" in page.text and "Where you are signed in" not in page.text
    assert attacker.get("/enrol/totp").status_code == 403
    assert attacker.get("/enrol/passkey").status_code == 403
    csrf = next(f for f in forms_of(page.text) if f.fields.get("action") == "otp").fields["csrf_token"]
    for action, fields in (("remove_factor", {"factor": "totp"}), ("end_session", {"session": "x"}),
                           ("password", {"current": "wonderland", "new": "attacker-chosen"})):
        refused = attacker.http.post(f"{op.url}/account", timeout=10,
                                     data={"csrf_token": csrf, "action": action, **fields})
        assert refused.status_code == 200 and "confirm with your second factor" in refused.text
    wrong = attacker.http.post(f"{op.url}/account", timeout=10,
                               data={"csrf_token": csrf, "action": "otp", "otp": "000000"})
    assert "confirm with your second factor" in wrong.text or "not valid" in wrong.text.lower()
    assert op.store.credentials_of("u-alice") == {}  # nothing changed: her seeded app still signs her in
    # with her code, the same session may (alice herself, back at her desk)
    page = account(attacker)
    assert "Where you are signed in" in page.text and 'id="enrol-passkey"' not in page.text
    assert attacker.get("/enrol/totp").status_code == 200


FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
SAFARI_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")


def test_sessions_show_their_device_and_address(op: LiveOP, browser: BrowserAgent,
                                                new_browser: Callable[[], BrowserAgent]) -> None:
    laptop, phone = browser, new_browser()
    laptop.http.headers["User-Agent"] = FIREFOX
    phone.http.headers["User-Agent"] = SAFARI_IOS + " " + "x" * 10_000  # a huge header: only a label is kept
    laptop.sign_in("portal")
    phone.sign_in("docs")
    devices = {s.device for s in op.store.sessions_of("u-alice", op.clock.now)}
    assert {(d.address, d.label) for d in devices} == {("127.0.0.1", "Firefox on Linux"),
                                                     ("127.0.0.1", "Safari on iOS")}
    page = account(laptop).text
    assert "Firefox on Linux" in page and "Safari on iOS" in page and "127.0.0.1" in page
    assert "x" * 100 not in page and "Gecko/20100101" not in page


def test_a_re_authentication_updates_the_device(op: LiveOP, browser: BrowserAgent) -> None:
    browser.http.headers["User-Agent"] = FIREFOX
    browser.sign_in("portal")
    op.clock.advance(5)
    browser.http.headers["User-Agent"] = SAFARI_IOS
    moved = act(browser, "password", current="wonderland", new="looking-glass")  # a fresh pwd event
    assert moved.status_code == 303
    (session,) = op.store.sessions_of("u-alice", op.clock.now)
    assert session.device.label == "Safari on iOS"


def test_a_passkey_a_policy_needs_is_kept_though_a_second_factor_remains(op: LiveOP,
                                                                       browser: BrowserAgent) -> None:
    """Alice keeps her authenticator app either way; Documentation's loa:3 step-up needs amr hwk."""
    op.store.put_credential("u-alice", "pk:abc", {"kind": "passkey", "label": "Laptop key"})
    browser.sign_in("portal")
    page = act(browser, "remove_factor", factor="pk:abc")
    assert "some actions in Documentation need it" in page.text
    assert "pk:abc" in op.store.credentials_of("u-alice")
    op.store.put_credential("u-alice", "pk:def", {"kind": "passkey", "label": "Phone"})
    act(browser, "remove_factor", factor="pk:abc")  # another hardware-bound key remains: removed
    assert set(op.store.credentials_of("u-alice")) == {"pk:def"}
    synced = {"kind": "passkey", "label": "Synced", "synced": True}
    op.store.put_credential("u-alice", "pk:ghi", synced)  # a synced passkey proves swk, not hwk
    page = act(browser, "remove_factor", factor="pk:def")
    assert "Documentation" in page.text and "pk:def" in op.store.credentials_of("u-alice")


def test_two_removals_racing_leave_the_factor_a_policy_needs(op: LiveOP, browser: BrowserAgent,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Both removals passed their check while the other key was still there; one of them puts its key back."""
    op.store.put_credential("u-alice", "pk:abc", {"kind": "passkey", "label": "Laptop key"})
    op.store.put_credential("u-alice", "pk:def", {"kind": "passkey", "label": "Phone"})
    browser.sign_in("portal")
    delete = op.store.delete_credential

    def racing(subject: str, credential_id: str) -> bool:
        if credential_id == "pk:abc":
            delete(subject, "pk:def")  # the other tab's removal of the phone lands at the same moment
        return delete(subject, credential_id)

    monkeypatch.setattr(op.store, "delete_credential", racing)
    page = act(browser, "remove_factor", factor="pk:abc")
    assert "some actions in Documentation need it" in page.text
    assert set(op.store.credentials_of("u-alice")) == {"pk:abc"}  # put back: one hardware key remains


def test_guessing_the_current_password_is_throttled_as_sign_in_is(op: LiveOP, browser: BrowserAgent) -> None:
    # a hijacked session must not become an unthrottled password oracle (SPEC §7)
    browser.sign_in("portal")
    statuses = [act(browser, "password", current=f"guess-{i}", new="looking-glass").status_code
                for i in range(8)]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}, statuses
    refused = act(browser, "password", current="wonderland", new="looking-glass")
    assert refused.status_code == 429 and "Too many attempts" in refused.text
    assert refused.headers["Retry-After"].isdigit()
    assert op.store.credentials_of("u-alice") == {}  # the right password, too, waits its turn


def test_the_password_form_names_its_account_for_password_managers(op: LiveOP, browser: BrowserAgent) -> None:
    """A password form with no username field: Chrome warns, and password managers cannot file it."""
    browser.sign_in("portal")
    page = account(browser)
    form = next(f for f in forms_of(page.text) if "new" in f.fields)
    assert form.fields.get("username") == "alice"
    assert re.search(r'<input type="text" name="username" autocomplete="username" value="alice" hidden>',
                     page.text)
    # the field changes nothing: the form still changes the password it always did
    fields = {**form.fields, "action": "password", "current": "wonderland", "new": "looking-glass"}
    done = browser.http.post(f"{op.url}/account", data=fields, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and "password_changed" in done.headers["Location"]
