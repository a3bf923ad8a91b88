"""Key rollover over HTTP with two instances on one state directory and one store (issue 14, acceptance 4).

Two policy-sso instances on waitress (loopback, free ports) share a state
directory (keys, interaction key) and a SQLite store, and one fake clock.
Relying parties cache each instance's /jwks for the max-age it advertises and
never fetch it early, not even for an unknown kid (the strictest client). An
operator runs ``keys rotate``, reloads one instance at once and the other
late; tokens are minted on both all the while, and every token verifies
against every relying party's cached key set until it expires.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from live_op import DEMO, FakeClock
from support import serving

from policy_sso.cli import main
from policy_sso.oidc.interaction import load_or_create_key
from policy_sso.oidc.keys import JWKS_MAX_AGE, PUBLISH_AHEAD, KeyRing
from policy_sso.oidc.provider import state_dir_key
from policy_sso.reload import TenantHolder
from policy_sso.sessions.store import open_store
from policy_sso.tenant import load_tenant
from server.app import create_app, keys_follow_reloads, longest_token_lifetime
from server.limits import create_server

ADMIN_TOKEN = "rollover-admin-token-" + "x" * 32
START = 1_800_000_000
STEP = 20  # seconds of fake time between rounds


@dataclass
class Instance:
    url: str
    ring: KeyRing


@contextlib.contextmanager
def instance(tenant_dir: Path, state: Path, db: Path, clock: FakeClock) -> Iterator[Instance]:
    tenant = load_tenant(tenant_dir)
    ring = KeyRing.load_or_create(state, tenant.settings.tokens.algorithms, now=clock(),
                                  token_lifetime=longest_token_lifetime(tenant))
    holder = TenantHolder(tenant, on_swap=keys_follow_reloads(ring))  # what serve() installs
    store = open_store(f"sqlite:///{db}", tenant.settings.lifetime)
    app = create_app(holder, store, ring, clock=clock, cookie_key=load_or_create_key(state_dir_key(state)))
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    try:
        with serving(server):
            yield Instance(f"http://127.0.0.1:{server.effective_port}", ring)
    finally:
        store.close()


@dataclass
class CachingRelyingParty:
    """Fetches an instance's /jwks and keeps it for the advertised max-age, never longer, never less."""

    url: str
    clock: FakeClock
    first_fetch: int
    keys: dict[str, Any] = field(default_factory=dict)
    fetched: int | None = None
    max_age: int = 0

    def key_set(self) -> dict[str, Any]:
        now = self.clock()
        if self.fetched is None or now >= self.fetched + self.max_age:
            resp = requests.get(f"{self.url}/jwks", timeout=10)
            resp.raise_for_status()
            self.max_age = int(re.search(r"max-age=(\d+)", resp.headers["Cache-Control"]).group(1))
            self.keys = {k["kid"]: k for k in resp.json()["keys"]}
            self.fetched = now
        return self.keys

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a token the cached set verifies; times are checked on the fake clock."""
        header = jwt.get_unverified_header(token)
        jwk = self.key_set().get(header["kid"])
        assert jwk is not None, f"kid {header['kid']} is not in the JWKS cached at {self.fetched}"
        claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]],
                            options={"verify_aud": False, "verify_exp": False, "verify_iat": False})
        assert claims["iat"] <= self.clock() < claims["exp"]
        return claims


def client_credentials_token(url: str) -> str:
    secret = (DEMO / "secrets" / "portal-backend.secret").read_text().strip()
    auth = base64.b64encode(f"portal-backend:{secret}".encode()).decode()
    resp = requests.post(f"{url}/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": f"Basic {auth}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def reload(url: str) -> None:
    resp = requests.post(f"{url}/admin/v1/policies/reload",
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert resp.status_code == 200, resp.text


@pytest.fixture
def tenant_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("tests"))
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN_TOKEN)
    return target


def test_tokens_verify_across_a_rollover_at_every_caching_relying_party(
        tenant_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clock = FakeClock(START)
    state, db = tmp_path / "state", tmp_path / "op.db"
    with instance(tenant_dir, state, db, clock) as a, instance(tenant_dir, state, db, clock) as b:
        # relying parties that first fetched at different moments, so their caches expire out of step
        rps = [CachingRelyingParty(inst.url, clock, START + offset)
               for inst in (a, b) for offset in (0, 100, 200, 280)]
        old_kid = jwt.get_unverified_header(client_credentials_token(a.url))["kid"]
        held: list[tuple[int, str]] = []  # (exp, token): every token is used until it expires
        rotate_at, reload_a_at, reload_b_at = START + 40, START + 60, START + 240
        lifetime = longest_token_lifetime(load_tenant(tenant_dir))
        end = reload_a_at + PUBLISH_AHEAD + lifetime + 2 * JWKS_MAX_AGE + 4 * STEP
        kids_seen: set[str] = set()
        while clock.now <= end:
            if clock.now == rotate_at:
                assert main(["keys", "rotate", "--config", str(tenant_dir), "--state-dir", str(state),
                             "--alg", "RS256"]) == 0
                new_kid = re.search(r"new signing key (\S+)", capsys.readouterr().out).group(1)
            if clock.now == reload_a_at:
                reload(a.url)
            if clock.now == reload_b_at:
                reload(b.url)
            for inst in (a, b):
                token = client_credentials_token(inst.url)
                kids_seen.add(jwt.get_unverified_header(token)["kid"])
                held.append((jwt.decode(token, options={"verify_signature": False})["exp"], token))
            held = [(exp, token) for exp, token in held if exp > clock.now]
            for rp in rps:
                if clock.now >= rp.first_fetch:
                    for _, token in held:
                        rp.verify(token)
            clock.now += STEP
        assert kids_seen == {old_kid, new_kid}  # the rollover happened, on both instances
        final_a = requests.get(f"{a.url}/jwks", timeout=10).json()
        final_b = requests.get(f"{b.url}/jwks", timeout=10).json()
        assert final_a == final_b  # converged on one set
        rs256 = [k["kid"] for k in final_a["keys"] if k["alg"] == "RS256"]
        assert rs256 == [new_kid]  # the old key left once every token it signed had expired
