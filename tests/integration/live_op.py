"""Helpers for the live-server tests: a fake clock, an HTML form parser, a client app and a browser.

The browser is ``requests`` plus an HTML form parser: it follows the
provider's own redirects, fills the hosted forms like a person would, and
stops at the client's redirect_uri, returning what the client would receive.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyotp
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from support import START, FakeClock, loopback_server, serving  # noqa: F401 (START: tests import it from here)

from policy_sso.reload import TenantHolder
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "policies"
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer"}
USERS_OF_TESTS = ("u-alice", "u-bob", "u-carol")
REDIRECTS = {"portal": "http://127.0.0.1:9001/callback", "payments-web": "http://127.0.0.1:9002/callback",
             "payments-api": "http://127.0.0.1:9002/api-callback", "docs": "http://127.0.0.1:9003/callback",
             "spa": "http://127.0.0.1:9005/callback", "backoffice": "http://127.0.0.1:9006/callback",
             "intranet-bridge": "http://127.0.0.1:9004/callback",
             "portal-backend": "http://127.0.0.1:9001/api-callback", "shop": "http://127.0.0.1:9008/callback"}


# --- HTML forms ---------------------------------------------------------------

@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # name -> type
    buttons: list[tuple[str, str]] = field(default_factory=list)


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1].inputs[a["name"]] = a.get("type", "text")
            self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))


def forms_of(html: str) -> list[Form]:
    parser = FormParser()
    parser.feed(html)
    return parser.forms


# --- the live server ------------------------------------------------------------

@dataclass
class LiveOP:
    url: str
    clock: FakeClock
    store: Any
    tenant: Tenant
    keyring: Any

    def secret(self, client_id: str) -> str:
        return (DEMO / "secrets" / f"{client_id}.secret").read_text().strip()

    def totp(self, username: str = "alice") -> str:
        seed = (DEMO / "secrets" / f"{username}.totp").read_text().strip()
        return pyotp.TOTP(seed).at(self.clock.now)

    def token(self, client_id: str | None, auth: str = "basic", secret: str | None = None,
              **form: str) -> requests.Response:
        """Call /token as a client app would."""
        headers = {}
        if client_id is not None:
            secret = self.secret(client_id) if secret is None and auth != "none" else secret
            if auth == "basic":
                raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret or '')}"
                headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
            elif auth == "post":
                form = {**form, "client_id": client_id, "client_secret": secret or ""}
            else:
                form = {**form, "client_id": client_id}
        return requests.post(f"{self.url}/token", data=form, headers=headers, timeout=10)

    def post_as(self, client_id: str, path: str, **form: str) -> requests.Response:
        return requests.post(f"{self.url}{path}", data=form, auth=(client_id, self.secret(client_id)),
                             timeout=10)

    def exchange(self, client_id: str, code: str) -> dict:
        """Return the tokens for ``code`` redeemed at /token by ``client_id`` (its REDIRECTS entry)."""
        resp = self.token(client_id, grant_type="authorization_code", code=code,
                          redirect_uri=REDIRECTS[client_id])
        assert resp.status_code == 200, resp.text
        return resp.json()

    def client_token(self, client_id: str) -> str:
        """Return an access token ``client_id`` gets for itself (client_credentials grant)."""
        resp = self.token(client_id, grant_type="client_credentials")
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    def post_json(self, path: str, token: str | None, body: dict | None = None) -> requests.Response:
        """POST ``body`` as JSON to ``path`` with ``token`` as the bearer (no Authorization without one)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=10)

    def verify_id_token(self, id_token: str, client_id: str, nonce: str | None = None) -> dict:
        """Verify with joserfc against /jwks, independently of the project's own JWT code."""
        keys = KeySet.import_key_set(requests.get(f"{self.url}/jwks", timeout=10).json())
        token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "EdDSA"])
        checks: dict[str, Any] = {"iss": {"essential": True, "value": self.url},
                                  "aud": {"essential": True, "value": client_id},
                                  "sub": {"essential": True}, "exp": {"essential": True},
                                  "iat": {"essential": True}, "auth_time": {"essential": True}}
        if nonce is not None:
            checks["nonce"] = {"essential": True, "value": nonce}
        jwt.JWTClaimsRegistry(now=self.clock.now, **checks).validate(token.claims)
        return {**token.claims, "_alg": token.header["alg"]}


# --- the browser ------------------------------------------------------------------

def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


@dataclass
class Callback:
    """What arrived at the client's redirect_uri."""

    url: str
    params: dict[str, str]

    @property
    def error(self) -> str | None:
        return self.params.get("error")

    @property
    def codes(self) -> list[str]:
        return self.params.get("error_description", "").split()


class BrowserAgent:
    """A user's browser: one cookie jar, follows the provider's redirects, fills its forms."""

    def __init__(self, op: LiveOP) -> None:
        self.op = op
        self.http = requests.Session()
        self.last: requests.Response | None = None

    @property
    def session_cookie(self) -> str | None:
        return self.http.cookies.get("psso_session")

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(f"{self.op.url}{path}", params=params, allow_redirects=False, timeout=10)

    def authorize_request(self, client_id: str, *, nonce: str | None = "n-0S6",
                          **extra: str) -> requests.Response:
        params = {"client_id": client_id, "redirect_uri": REDIRECTS.get(client_id, ""),
                  "response_type": "code", "scope": "openid profile", "state": "xyz"}
        if nonce is not None:
            params["nonce"] = nonce
        params.update(extra)
        return self.get("/authorize", **{k: v for k, v in params.items() if v is not None})

    def follow(self, resp: requests.Response) -> requests.Response | Callback:
        """Follow the provider's redirects; return the page shown, or the client's callback."""
        while resp.status_code in (301, 302, 303, 307):
            location = urllib.parse.urljoin(resp.url, resp.headers["Location"])
            if not location.startswith(self.op.url + "/"):
                return callback(location)
            resp = self.http.get(location, allow_redirects=False, timeout=10)
        self.last = resp
        forms = forms_of(resp.text) if "text/html" in resp.headers.get("Content-Type", "") else []
        if forms and not forms[0].action.startswith(("/", self.op.url)):
            return Callback(forms[0].action, dict(forms[0].fields))  # form_post response mode
        return resp

    def submit(self, page: requests.Response, values: dict[str, str],
               button: tuple[str, str] | None = None) -> requests.Response:
        form = forms_of(page.text)[0]
        data = {**form.fields, **values}
        if button:
            data[button[0]] = button[1]
        url = urllib.parse.urljoin(page.url, form.action)
        return self.http.post(url, data=data, allow_redirects=False, timeout=10)

    def interact(self, resp: requests.Response, username: str = "alice", *, password: str | None = None,
                 otp: bool = True, consent: str = "allow", max_pages: int = 8) -> Callback:
        """Run the hosted pages until the client gets its answer; return that answer."""
        result = self.follow(resp)
        for _ in range(max_pages):
            if isinstance(result, Callback):
                return result
            page = result
            kind = page_kind(page)
            if kind == "login":
                result = self.follow(self.submit(page, {"username": username,
                                                        "password": password or PASSWORDS[username]}))
            elif kind == "otp" and otp:
                result = self.follow(self.submit(page, {"otp": self.op.totp(username)}))
            elif kind == "consent":
                result = self.follow(self.submit(page, {}, ("decision", consent)))
            elif kind == "factor":  # the app needs a factor the user lacks: they go back to the app
                result = self.follow(self.submit(page, {}, ("cancel", "yes")))
            else:
                raise AssertionError(f"stuck on a {kind} page ({page.status_code}): {page.text[:300]}")
        raise AssertionError("too many pages")

    def sign_in(self, client_id: str, username: str = "alice", **params: str) -> Callback:
        return self.interact(self.authorize_request(client_id, **params), username)

    def sign_in_with(self, client_id: str, username: str, password: str, **params: str) -> Callback:
        return self.interact(self.authorize_request(client_id, **params), username, password=password)

    def account(self, username: str = "alice") -> requests.Response:
        """Open /account; a user with an authenticator app confirms with a code first, as a person would."""
        page = self.get("/account")
        confirm = [f for f in forms_of(page.text) if f.fields.get("action") == "otp"]
        if confirm:
            code = self.op.totp(username)
            moved = self.http.post(f"{self.op.url}/account", allow_redirects=False, timeout=10, data={
                "csrf_token": confirm[0].fields["csrf_token"], "action": "otp", "otp": code})
            assert moved.status_code == 303, moved.text
            page = self.get("/account")
            assert 'value="otp"' not in page.text
        return page

    def silent(self, client_id: str, **params: str) -> Callback:
        result = self.follow(self.authorize_request(client_id, prompt="none", **params))
        assert isinstance(result, Callback), f"prompt=none showed a page: {result.status_code}"
        return result


def page_kind(page: requests.Response) -> str:
    forms = forms_of(page.text)
    if not forms:
        return f"formless {page.status_code}"
    inputs = forms[0].inputs
    if inputs.get("password") == "password":
        return "login"
    if "otp" in inputs:
        return "otp"
    if ("decision", "allow") in forms[0].buttons:
        return "consent"
    if ("logout", "yes") in forms[0].buttons:
        return "logout"
    if ("cancel", "yes") in forms[0].buttons:
        return "factor"
    return "unknown"


def callback(location: str) -> Callback:
    parts = urllib.parse.urlsplit(location)
    raw = parts.fragment or parts.query
    return Callback(location, dict(urllib.parse.parse_qsl(raw, keep_blank_values=True)))


def with_settings(tenant: Tenant, **changes: Any) -> Tenant:
    """Return a new ``tenant`` with those settings replaced (``issuer=``, ``lifetime=``...)."""
    # built afresh, not dataclasses.replace(tenant): that would share its compiled-policy cache and lock
    return Tenant(tenant.directory, replace(tenant.settings, **changes), tenant.clients, tenant.users,
                  tenant.policies, tenant.policy_files)


def with_issuer(tenant: Tenant, issuer: str) -> Tenant:
    return with_settings(tenant, issuer=issuer)


def copy_demo(target: Path) -> Path:
    """Copy the demo tenant's files (not its tests or YAML twins) to ``target``; return ``target``."""
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


def tenant_yaml_at(directory: Path, url: str) -> str:
    """Return the text of ``directory``'s tenant.yaml with ``url`` as the issuer (to edit, then write)."""
    return (directory / "tenant.yaml").read_text().replace("issuer: http://127.0.0.1:8080", f"issuer: {url}")


# --- serving --------------------------------------------------------------------------

@contextlib.contextmanager
def serve_op(tenant_at: Callable[[str], Tenant | TenantHolder], store_url: str,
             keyring: Any) -> Iterator[LiveOP]:
    """Serve ``tenant_at(url)`` on waitress at a free loopback ``url`` over the store at ``store_url``.

    Yields the live provider (fake clock at START); the server stops and the store closes afterwards.
    """
    server = loopback_server()
    url = f"http://127.0.0.1:{server.effective_port}"
    served = tenant_at(url)
    tenant = served.tenant if isinstance(served, TenantHolder) else served
    clock = FakeClock()
    store = open_store(store_url, tenant.settings.lifetime, tenant.settings.store_options)
    server.application = create_app(served, store, keyring, clock=clock)
    try:
        with serving(server):
            yield LiveOP(url, clock, store, tenant, keyring)
    finally:
        store.close()
