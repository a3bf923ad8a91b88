"""A real browser (Debian's chromium, headless, through selenium) against policy-sso on waitress.

Nothing here downloads a browser: chromedriver and chromium are Debian's
(``.ci/run`` installs ``chromium chromium-driver``), given to selenium by path.
The driver is started once per module (a few seconds); each test gets a fresh
server and store, and the driver's cookies are cleared. The clients'
redirect_uris point at a small callback server, so a test reads what the app
received. A failing test leaves a screenshot in pytest's temporary directory.
"""

from __future__ import annotations

import html
import http.server
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from browser_support import Live
from live_op import FakeClock, LiveOP, with_issuer
from support import loopback_server, serving

from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app

CHROMIUM = os.environ.get("POLICY_SSO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("POLICY_SSO_CHROMEDRIVER", "/usr/bin/chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None


def _missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    return None


MISSING = _missing()
if MISSING:
    # loud: a skipped browser suite must not pass unnoticed
    print(f"\n*** BROWSER TESTS SKIPPED: {MISSING} ***\n", file=sys.stderr)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """Return a headless chromium, one per module; never a downloaded browser."""
    if MISSING:
        pytest.skip(f"BROWSER TESTS SKIPPED: {MISSING}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="psso-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1000,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    chrome.set_page_load_timeout(15)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


class _Callbacks(http.server.BaseHTTPRequestHandler):
    """The client apps' redirect_uris: each request is recorded and answered with a small page."""

    received: list[str] = []

    def do_GET(self) -> None:
        type(self).received.append(self.path)
        body = b"<!doctype html><title>app</title><h1 id='app'>back at the app</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """A form_post answer (OAuth 2.0 Form Post Response Mode): the page shows what was posted."""
        form = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        body = f"<!doctype html><title>app</title><pre id='posted'>{html.escape(form)}</pre>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def apps() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tenant_at(demo: Tenant, issuer: str, apps: str) -> Tenant:
    """Return the demo tenant at ``issuer`` with every redirect_uri at the callback server."""
    tenant = with_issuer(demo, issuer)
    clients = {cid: replace(c, redirect_uris=(f"{apps}/{cid}/callback",),
                            post_logout_redirect_uris=(f"{apps}/{cid}/signed-out",))
               for cid, c in tenant.clients.items()}
    return Tenant(tenant.directory, tenant.settings, clients, tenant.users, tenant.policies,
                  tenant.policy_files)


@pytest.fixture
def live(request: pytest.FixtureRequest, demo: Tenant, ring: Any, apps: str, driver: Any,
         tmp_path: Path) -> Iterator[Live]:
    """Serve the demo on a free loopback port (SQLite store, fake clock); a clean browser.

    A module's ``ISSUER_HOST`` names the issuer's host: passkeys need ``localhost``, since an IP
    address cannot be a WebAuthn RP ID.
    """
    server = loopback_server()
    url = f"http://{getattr(request.module, 'ISSUER_HOST', '127.0.0.1')}:{server.effective_port}"
    tenant = tenant_at(demo, url, apps)
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/op.db", tenant.settings.lifetime, tenant.settings.store_options)
    server.application = create_app(tenant, store, ring, clock=clock)
    try:
        with serving(server):
            driver.get(f"{url}/favicon.ico")  # cookies are per origin: clear this one's
            driver.delete_all_cookies()
            yield Live(LiveOP(url, clock, store, tenant, ring), apps)
    finally:
        store.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "driver" in getattr(item, "funcargs", {}):
        shots = Path(tempfile.gettempdir()) / "policy-sso-browser-screenshots"
        shots.mkdir(exist_ok=True)
        path = shots / f"{item.name}.png"
        try:
            item.funcargs["driver"].save_screenshot(str(path))
            report.sections.append(("screenshot", str(path)))
        except Exception as err:  # the browser may be what failed
            report.sections.append(("screenshot", f"none: {err}"))


@pytest.fixture
def authenticator(driver: Any, live: Live) -> Iterator[Any]:
    """A platform authenticator with resident keys and user verification (a phone's or laptop's), in
    the browser for the test (Chrome's virtual authenticator, WebDriver §Virtual Authenticators)."""
    from selenium.webdriver.common.virtual_authenticator import (
        Protocol,
        Transport,
        VirtualAuthenticatorOptions,
    )

    options = VirtualAuthenticatorOptions(protocol=Protocol.CTAP2, transport=Transport.INTERNAL,
                                          has_resident_key=True, has_user_verification=True,
                                          is_user_verified=True, is_user_consenting=True)
    driver.add_virtual_authenticator(options)
    try:
        yield driver
    finally:
        driver.remove_virtual_authenticator()
