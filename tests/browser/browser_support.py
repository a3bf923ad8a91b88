"""What the browser tests share: the served provider's handle and page helpers (waits that
never read the page being left)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from live_op import LiveOP
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 5  # seconds a page may take on a loaded machine


@dataclass
class Live:
    """The served provider and the callback server's address."""

    op: LiveOP
    apps: str

    def redirect_uri(self, client_id: str) -> str:
        return f"{self.apps}/{client_id}/callback"

    def authorize_url(self, client_id: str, scope: str = "openid profile", **extra: str) -> str:
        params = {"client_id": client_id, "redirect_uri": self.redirect_uri(client_id),
                  "response_type": "code", "scope": scope, "state": "st8", "nonce": "n0", **extra}
        if self.op.tenant.clients[client_id].is_public:
            params.update(code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSMw-cM",
                          code_challenge_method="S256")
        return f"{self.op.url}/authorize?{urllib.parse.urlencode(params)}"

    def answer(self, url: str) -> dict[str, str]:
        """Return the query the app received at ``url``."""
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))



PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}


def wait_for(driver: Any, css: str) -> Any:
    return WebDriverWait(driver, WAIT).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def at_app(driver: Any, live: Live, client_id: str) -> dict[str, str]:
    WebDriverWait(driver, WAIT).until(lambda d: d.current_url.startswith(live.redirect_uri(client_id)))
    return live.answer(driver.current_url)


def password(driver: Any, username: str, secret: str | None = None) -> None:
    wait_for(driver, "#username").clear()
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(secret or PASSWORDS[username])
    submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def alice_at_portal(driver: Any, live: Live) -> None:
    """Sign alice in at the portal with her password and consent; return once the portal has its code."""
    driver.get(live.authorize_url("portal"))
    password(driver, "alice")
    wait_for(driver, "button[value=allow]").click()
    at_app(driver, live, "portal")


def open_account(driver: Any, live: Live, username: str = "alice") -> None:
    """Open /account as the signed-in user; one with an authenticator app types a code first."""
    driver.get(f"{live.op.url}/account")
    wait_for(driver, "h1")
    if driver.find_elements(By.CSS_SELECTOR, "input[name=otp]"):
        driver.find_element(By.ID, "otp").send_keys(live.op.totp(username))
        submit(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    wait_for(driver, "#sessions")


def submit(driver: Any, button: Any) -> None:
    """Click a button and wait for the next page (never read the old one)."""
    button.click()
    WebDriverWait(driver, WAIT).until(lambda d: _gone(button))


def _gone(element: Any) -> bool:
    """Return whether ``element`` left the page (selenium's staleness_of, or chromedriver's word for it).

    Asked in the middle of a navigation, chromedriver may answer "Node with
    given id does not belong to the document" instead of a stale element
    reference: the same fact.
    """
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as err:
        if "does not belong to the document" in str(err.msg):
            return True
        raise
    return False
