"""Sign-ins started in two tabs of one browser each finish, for their own app (a browser walk).

One cookie used to hold the newest pending sign-in only: the first tab's
password or consent was then refused as "not started here", and its app never
heard back. Each pending sign-in now has a cookie of its own.
"""

from __future__ import annotations

import urllib.parse

import requests
from live_op import BrowserAgent, Callback, LiveOP, page_kind

from server.browser import INTERACTION_PREFIX, MAX_PENDING_INTERACTIONS


def login_page(browser: BrowserAgent, client_id: str, **params: str) -> requests.Response:
    page = browser.follow(browser.authorize_request(client_id, **params))
    assert not isinstance(page, Callback) and page_kind(page) == "login", page
    return page


def test_both_tabs_sign_in_each_for_its_own_app(op: LiveOP, browser: BrowserAgent) -> None:
    first = login_page(browser, "portal", state="tab-1")
    second = login_page(browser, "docs", state="tab-2")
    done = browser.interact(first, "bob")  # the first tab's form, after the second tab began
    assert done.error is None and done.params["state"] == "tab-1", done.params
    assert done.url.startswith("http://127.0.0.1:9001/")  # portal's redirect_uri
    other = browser.interact(second, "bob")  # signed in now: the second tab still finishes
    assert other.error is None and other.params["state"] == "tab-2", other.params


def test_a_finished_sign_in_leaves_no_cookie_behind(op: LiveOP, browser: BrowserAgent) -> None:
    page = login_page(browser, "portal")
    interaction_id = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["interaction"][0]
    assert browser.http.cookies.get(INTERACTION_PREFIX + interaction_id)
    browser.interact(page, "bob")
    assert browser.http.cookies.get(INTERACTION_PREFIX + interaction_id) is None


def test_pending_sign_ins_are_bounded_per_browser(op: LiveOP, browser: BrowserAgent) -> None:
    pages = [login_page(browser, "portal", state=f"s{i}") for i in range(MAX_PENDING_INTERACTIONS + 4)]
    pending = [c.name for c in browser.http.cookies if c.name.startswith(INTERACTION_PREFIX)]
    assert len(pending) == MAX_PENDING_INTERACTIONS
    newest = browser.interact(pages[-1], "bob")  # the newest ones are kept
    assert newest.error is None and newest.params["state"] == f"s{MAX_PENDING_INTERACTIONS + 3}"
