"""A public app pushes its request (RFC 9126), signs the user in with the request_uri, and holds
DPoP-bound tokens (RFC 9449): over real HTTP, proofs made and tokens checked with joserfc.

The story: the SPA pushes its authorization request to /par, the browser
authorizes with client_id + request_uri, the SPA redeems the code with a DPoP
proof and calls /userinfo with `Authorization: DPoP` and a proof of that call;
its refresh token works only with its key. Every misuse is refused: a
request_uri replayed, expired or used by another client, a proof replayed,
for another method or URL, too old, with a private key, with alg none, or by
another key, and the bound token presented as a Bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from live_op import BrowserAgent, Callback, LiveOP, pkce_pair, with_issuer

from policy_sso.config import Client, DpopSettings
from policy_sso.tenant import Tenant

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 renames EdDSA
APP = "spa-dpop"
CALLBACK = "http://127.0.0.1:9008/callback"


@pytest.fixture
def tenant_for(demo_tenant: Tenant, request: pytest.FixtureRequest) -> Callable[[str], Tenant]:
    """The demo tenant plus a public client that must push its requests and always uses DPoP.

    A test named ``test_server_nonce…`` gets a tenant that requires DPoP server nonces.
    """
    nonces = request.node.name.startswith("test_server_nonce")
    app = Client(client_id=APP, name="SPA with DPoP", type="public", token_endpoint_auth_method="none",
                 redirect_uris=(CALLBACK,), scopes=("openid", "profile", "email", "offline_access"),
                 require_pushed_authorization_requests=True, dpop_bound_access_tokens=True,
                 policy="default")

    def make(url: str) -> Tenant:
        base = with_issuer(demo_tenant, url)
        settings = replace(base.settings, dpop=DpopSettings(nonce=True)) if nonces else base.settings
        return Tenant(base.directory, settings, {**base.clients, APP: app}, base.users,
                      base.policies, base.policy_files)

    return make


class Prover:
    """The app's DPoP key and the proofs it signs (RFC 9449 §4.2), with joserfc."""

    def __init__(self, op: LiveOP) -> None:
        self.op = op
        self.key = ECKey.generate_key("P-256")

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, method: str, path: str, *, access_token: str | None = None, iat: int | None = None,
              header_jwk: dict | None = None, **claims: Any) -> str:
        body: dict[str, Any] = {"htm": method, "htu": self.op.url + path, "jti": secrets.token_urlsafe(12),
                                "iat": self.op.clock.now if iat is None else iat, **claims}
        if access_token is not None:
            body["ath"] = base64.urlsafe_b64encode(
                hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()
        header = {"typ": "dpop+jwt", "alg": "ES256",
                  "jwk": header_jwk if header_jwk is not None else self.key.as_dict(private=False)}
        return jwt.encode(header, body, self.key)

    def token(self, proof: str | None = None, **form: str) -> requests.Response:
        headers = {"DPoP": proof if proof is not None else self.proof("POST", "/token")}
        return requests.post(f"{self.op.url}/token", data={"client_id": APP, **form}, headers=headers,
                             timeout=10)

    def userinfo(self, access_token: str, *, scheme: str = "DPoP", proof: str | None = None,
                 method: str = "GET") -> requests.Response:
        headers = {"Authorization": f"{scheme} {access_token}"}
        if scheme == "DPoP":
            headers["DPoP"] = proof if proof is not None else self.proof(method, "/userinfo",
                                                                         access_token=access_token)
        return requests.request(method, f"{self.op.url}/userinfo", headers=headers, timeout=10)


def push(op: LiveOP, client_id: str = APP, **params: str) -> requests.Response:
    verifier_challenge = params.pop("code_challenge", None)
    form = {"client_id": client_id, "response_type": "code", "redirect_uri": CALLBACK,
            "scope": "openid profile email offline_access", "state": "st-1", "nonce": "n-1",
            "code_challenge_method": "S256", **params}
    if verifier_challenge:
        form["code_challenge"] = verifier_challenge
    return requests.post(f"{op.url}/par", data=form, timeout=10)


def authorize_with(browser: BrowserAgent, request_uri: str, client_id: str = APP,
                   **extra: str) -> requests.Response:
    return browser.get("/authorize", client_id=client_id, request_uri=request_uri, **extra)


def access_claims(op: LiveOP, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(requests.get(f"{op.url}/jwks", timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"])
    assert decoded.header["typ"] == "at+jwt"
    return decoded.claims


def sign_in_pushed(op: LiveOP, browser: BrowserAgent, **params: str) -> tuple[Callback, str, str]:
    """Push, authorize with the request_uri, sign in; return (callback, code_verifier, request_uri)."""
    verifier, challenge = pkce_pair()
    pushed = push(op, code_challenge=challenge, **params)
    assert pushed.status_code == 201, pushed.text
    body = pushed.json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert body["expires_in"] == 60
    assert pushed.headers["Cache-Control"] == "no-store"
    cb = browser.interact(authorize_with(browser, body["request_uri"]))
    assert isinstance(cb, Callback) and cb.error is None, getattr(cb, "params", cb)
    return cb, verifier, body["request_uri"]


def _verifications(op: LiveOP) -> tuple[float, float]:
    """Return the ES256 proof verifications and their CPU seconds so far, from /metrics."""
    text = requests.get(f"{op.url}/metrics", timeout=10).text
    found = dict(re.findall(r'^policy_sso_(dpop_verifications_total|dpop_verification_cpu_seconds_total)'
                            r'\{alg="ES256"\} (\S+)$', text, re.M))
    return (float(found.get("dpop_verifications_total", 0)),
            float(found.get("dpop_verification_cpu_seconds_total", 0)))


def test_discovery_advertises_par_and_dpop(op: LiveOP) -> None:
    doc = requests.get(f"{op.url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["pushed_authorization_request_endpoint"] == f"{op.url}/par"
    assert doc["require_pushed_authorization_requests"] is False  # per client here, not tenant-wide
    assert set(doc["dpop_signing_alg_values_supported"]) == {"ES256", "EdDSA", "RS256", "PS256"}
    assert not {"none", "HS256"} & set(doc["dpop_signing_alg_values_supported"])


def test_push_authorize_redeem_with_dpop_and_call_userinfo(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, request_uri = sign_in_pushed(op, browser)
    assert cb.url.startswith(CALLBACK + "?")
    assert cb.params["state"] == "st-1" and cb.params["iss"] == op.url  # the pushed state comes back

    app = Prover(op)
    before = _verifications(op)
    resp = app.token(grant_type="authorization_code", code=cb.params["code"], redirect_uri=CALLBACK,
                     code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["token_type"] == "DPoP"
    # the proof's one signature verification is counted, with the CPU it took (GET /metrics)
    after = _verifications(op)
    assert after[0] == before[0] + 1 and after[1] > before[1]
    claims = access_claims(op, tokens["access_token"])
    assert claims["cnf"] == {"jkt": app.jkt}  # RFC 9449 §6.1
    assert claims["client_id"] == APP
    assert op.verify_id_token(tokens["id_token"], APP, nonce="n-1")["sub"] == "u-alice"

    for method in ("GET", "POST"):
        info = app.userinfo(tokens["access_token"], method=method)
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == "u-alice" and info.json()["email"] == "alice@example.com"

    # introspection by a resource server shows the binding (RFC 9449 §6.2)
    seen = op.post_as("portal", "/introspect", token=tokens["access_token"]).json()
    assert seen["active"] is True and seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": app.jkt}

    # the request_uri worked once (RFC 9126 §4), however it is spelled: base64url padding, a stray
    # character or spare bits would each be another identifier in the store
    for spelling in (request_uri, request_uri + "=", request_uri + "==", request_uri + "\n",
                     request_uri[:-1] + chr(ord(request_uri[-1]) ^ 1)):
        again = BrowserAgent(op).http.get(f"{op.url}/authorize", params={"client_id": APP,
                                                                         "request_uri": spelling},
                                          allow_redirects=False, timeout=10)
        assert again.status_code == 400 and "invalid_request_uri" in again.text, repr(spelling)
        assert "Location" not in again.headers


def test_refresh_token_of_a_public_client_is_bound_to_its_key(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, _ = sign_in_pushed(op, browser)
    app = Prover(op)
    tokens = app.token(grant_type="authorization_code", code=cb.params["code"], redirect_uri=CALLBACK,
                       code_verifier=verifier).json()
    refreshed = app.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["token_type"] == "DPoP"
    assert access_claims(op, refreshed.json()["access_token"])["cnf"] == {"jkt": app.jkt}

    thief = Prover(op)  # holds the refresh token, not the key
    stolen = thief.token(grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"])
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    # treated as theft: the family is gone for the app too (RFC 9700 §4.14.2)
    after = app.token(grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"])
    assert after.status_code == 400


def test_a_client_that_must_use_dpop_cannot_redeem_without_a_proof(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, _ = sign_in_pushed(op, browser)
    form = {"grant_type": "authorization_code", "code": cb.params["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier, "client_id": APP}
    resp = requests.post(f"{op.url}/token", data=form, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof"
    # the refused request did not spend the code
    assert Prover(op).token(**{k: v for k, v in form.items() if k != "client_id"}).status_code == 200


def _unsigned_proof(op: LiveOP, prover: Prover, path: str, access_token: str) -> str:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": prover.key.as_dict(private=False)}
    body = {"htm": "GET", "htu": op.url + path, "jti": "none-1", "iat": op.clock.now,
            "ath": base64.urlsafe_b64encode(
                hashlib.sha256(access_token.encode()).digest()).rstrip(b"=").decode()}

    def b64(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(body)}."


def test_misused_proofs_and_tokens_at_userinfo_are_refused(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, _ = sign_in_pushed(op, browser)
    app = Prover(op)
    token = app.token(grant_type="authorization_code", code=cb.params["code"], redirect_uri=CALLBACK,
                      code_verifier=verifier).json()["access_token"]
    used = app.proof("GET", "/userinfo", access_token=token)
    assert app.userinfo(token, proof=used).status_code == 200
    other = Prover(op)
    cases = {
        "replayed": used,
        "other_method": app.proof("POST", "/userinfo", access_token=token),
        "other_url": app.proof("GET", "/token", access_token=token),
        "too_old": app.proof("GET", "/userinfo", access_token=token, iat=op.clock.now - 300),
        "private_key_in_header": app.proof("GET", "/userinfo", access_token=token,
                                           header_jwk=app.key.as_dict(private=True)),
        "alg_none": _unsigned_proof(op, app, "/userinfo", token),
        "another_key": other.proof("GET", "/userinfo", access_token=token),
        "no_ath": app.proof("GET", "/userinfo"),
    }
    for case, proof in cases.items():
        resp = app.userinfo(token, proof=proof)
        assert resp.status_code == 401, (case, resp.status_code, resp.text)
        challenge = resp.headers["WWW-Authenticate"]
        assert challenge.startswith("DPoP "), (case, challenge)  # RFC 9449 §7.1
        assert 'algs="' in challenge and "error=" in challenge, (case, challenge)
        assert resp.json()["error"] in ("invalid_dpop_proof", "invalid_token"), (case, resp.json())

    # the bound token as a Bearer token (RFC 9449 §7.2), in the header and in a form body
    bearer = app.userinfo(token, scheme="Bearer")
    assert bearer.status_code == 401 and bearer.json()["error"] == "invalid_token"
    assert bearer.headers["WWW-Authenticate"].startswith("DPoP ")
    posted = requests.post(f"{op.url}/userinfo", data={"access_token": token}, timeout=10)
    assert posted.status_code == 401 and posted.json()["error"] == "invalid_token"
    # a token that does not verify, presented with the DPoP scheme, is told so in a DPoP challenge
    forged = app.userinfo(token[:-4] + "AAAA")
    assert forged.status_code == 401 and forged.headers["WWW-Authenticate"].startswith("DPoP ")
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]


def test_misused_proofs_at_the_token_endpoint_are_refused(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, _ = sign_in_pushed(op, browser)
    app = Prover(op)
    form = {"grant_type": "authorization_code", "code": cb.params["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier}
    good = app.proof("POST", "/token")
    for case, proof in {"other_method": app.proof("GET", "/token"),
                        "other_url": app.proof("POST", "/userinfo"),
                        "too_old": app.proof("POST", "/token", iat=op.clock.now - 120),
                        "private_key": app.proof("POST", "/token", header_jwk=app.key.as_dict(private=True)),
                        }.items():
        resp = app.token(proof, **form)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", (case, resp.text)
    redeemed = app.token(good, **form)
    assert redeemed.status_code == 200
    # the proof was spent with that request: replaying it is refused
    replay = app.token(good, grant_type="refresh_token", refresh_token="whatever")
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_dpop_proof"
    # the whole request sent again (code, verifier and proof) is refused as a replayed proof, not taken
    # for a reuse of the code: only a fresh proof by a key reuses a code, so the tokens live on
    replay = app.token(good, **form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_dpop_proof"
    assert app.userinfo(redeemed.json()["access_token"]).status_code == 200
    # and so is redeeming another code with it; the code and the proof are spent in one store write,
    # so that code is spent too (fail closed: only a replay, never a client's honest retry, does this)
    cb, verifier, _ = sign_in_pushed(op, browser)
    other = {**form, "code": cb.params["code"], "code_verifier": verifier}
    replay = app.token(good, **other)
    assert replay.status_code == 400 and replay.json() == {
        "error": "invalid_dpop_proof", "error_description": "the DPoP proof was already used"}
    assert app.token(app.proof("POST", "/token"), **other).json()["error"] == "invalid_grant"


def test_request_uri_refused_when_expired_or_used_by_another_client(op: LiveOP,
                                                                    browser: BrowserAgent) -> None:
    _, challenge = pkce_pair()
    request_uri = push(op, code_challenge=challenge).json()["request_uri"]
    # another client cannot use it (RFC 9126 §4: client_id must be the pusher's)
    stolen = authorize_with(browser, request_uri, client_id="spa")
    assert stolen.status_code == 400 and "invalid_request_uri" in stolen.text
    op.clock.advance(61)
    expired = authorize_with(browser, request_uri)
    assert expired.status_code == 400 and "invalid_request_uri" in expired.text
    forged = authorize_with(browser, "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(40))
    assert forged.status_code == 400 and "invalid_request_uri" in forged.text
    # with a registered redirect_uri in the query itself, the client hears of it there
    told = browser.follow(authorize_with(browser, request_uri, redirect_uri=CALLBACK, state="q"))
    assert isinstance(told, Callback) and told.url.startswith(CALLBACK)
    assert told.error == "invalid_request_uri" and told.params["state"] == "q"


def test_par_required_client_is_refused_without_it_and_par_validates_like_authorize(
        op: LiveOP, browser: BrowserAgent) -> None:
    _, challenge = pkce_pair()
    plain = browser.get("/authorize", client_id=APP, redirect_uri=CALLBACK, response_type="code",
                        scope="openid", state="s", code_challenge=challenge, code_challenge_method="S256")
    assert plain.status_code in (302, 303)
    refused = urllib.parse.parse_qs(urllib.parse.urlsplit(plain.headers["Location"]).query)
    assert refused["error"] == ["invalid_request"] and "/par" in refused["error_description"][0]

    # /par refuses what /authorize would: no PKCE for a public client, an unregistered redirect_uri,
    # a scope the client may not ask for, a request_uri inside a pushed request
    for params, error in [({}, "invalid_request"),
                          ({"code_challenge": challenge, "redirect_uri": "http://evil.example/cb"},
                           "invalid_request"),
                          ({"code_challenge": challenge, "scope": "openid payments:write"}, "invalid_scope"),
                          ({"code_challenge": challenge, "request_uri": "urn:x"}, "invalid_request")]:
        resp = push(op, **params)
        assert resp.status_code == 400 and resp.json()["error"] == error, (params, resp.text)
    # a confidential client authenticates at /par (RFC 9126 §2)
    anonymous = push(op, client_id="portal", redirect_uri="http://127.0.0.1:9001/callback")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    portal = requests.post(f"{op.url}/par", auth=("portal", op.secret("portal")), timeout=10,
                           data={"response_type": "code", "redirect_uri": "http://127.0.0.1:9001/callback",
                                 "scope": "openid", "state": "p"})
    assert portal.status_code == 201, portal.text


def test_the_policy_decides_a_pushed_request_like_any_other(op: LiveOP, browser: BrowserAgent) -> None:
    _, challenge = pkce_pair()
    # no session: a pushed prompt=none request is refused with the policy's error at the callback
    request_uri = push(op, code_challenge=challenge, prompt="none").json()["request_uri"]
    cb = browser.follow(authorize_with(browser, request_uri))
    assert isinstance(cb, Callback) and cb.error == "login_required" and cb.params["state"] == "st-1"
    # signed in, the same pushed silent request succeeds
    sign_in_pushed(op, browser)
    request_uri = push(op, code_challenge=challenge, prompt="none").json()["request_uri"]
    cb = browser.follow(authorize_with(browser, request_uri))
    assert isinstance(cb, Callback) and cb.error is None and cb.params["code"]


def test_a_push_with_a_proof_binds_the_code_to_that_key(op: LiveOP, browser: BrowserAgent) -> None:
    app, thief = Prover(op), Prover(op)
    verifier, challenge = pkce_pair()
    form = {"client_id": APP, "response_type": "code", "redirect_uri": CALLBACK, "scope": "openid",
            "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}
    # RFC 9449 §10.1: a DPoP proof sent with the push; dpop_jkt naming another key is refused
    mismatch = requests.post(f"{op.url}/par", data={**form, "dpop_jkt": thief.jkt},
                             headers={"DPoP": app.proof("POST", "/par")}, timeout=10)
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_dpop_proof"
    pushed = requests.post(f"{op.url}/par", data=form, headers={"DPoP": app.proof("POST", "/par")},
                           timeout=10)
    assert pushed.status_code == 201, pushed.text
    cb = browser.interact(authorize_with(browser, pushed.json()["request_uri"]))
    assert cb.error is None, cb.params
    redeem = {"grant_type": "authorization_code", "code": cb.params["code"], "redirect_uri": CALLBACK,
              "code_verifier": verifier}
    stolen = thief.token(**redeem)  # the code and verifier leaked, but not the key
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    tokens = app.token(**redeem)  # the refused attempt did not spend the code
    assert tokens.status_code == 200, tokens.text
    assert access_claims(op, tokens.json()["access_token"])["cnf"] == {"jkt": app.jkt}


def test_dpop_jkt_at_authorize_binds_the_code(op: LiveOP, browser: BrowserAgent) -> None:
    app, other = Prover(op), Prover(op)
    verifier, challenge = pkce_pair()
    cb = browser.sign_in("spa", code_challenge=challenge, code_challenge_method="S256", dpop_jkt=app.jkt)
    assert cb.error is None, cb.params
    form = {"grant_type": "authorization_code", "code": cb.params["code"],
            "redirect_uri": "http://127.0.0.1:9005/callback", "code_verifier": verifier, "client_id": "spa"}
    plain = requests.post(f"{op.url}/token", data=form, timeout=10)
    assert plain.status_code == 400 and plain.json()["error"] == "invalid_grant"
    wrong = requests.post(f"{op.url}/token", data=form, headers={"DPoP": other.proof("POST", "/token")},
                          timeout=10)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    good = requests.post(f"{op.url}/token", data=form, headers={"DPoP": app.proof("POST", "/token")},
                         timeout=10)
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP", good.text
    malformed = browser.follow(browser.authorize_request("spa", code_challenge=challenge,
                                                         code_challenge_method="S256", dpop_jkt="short"))
    assert isinstance(malformed, Callback) and malformed.error == "invalid_request"


def test_server_nonces_at_token_and_userinfo(op: LiveOP, browser: BrowserAgent) -> None:
    cb, verifier, _ = sign_in_pushed(op, browser)
    app = Prover(op)
    form = {"grant_type": "authorization_code", "code": cb.params["code"], "redirect_uri": CALLBACK,
            "code_verifier": verifier}
    first = app.token(**form)  # RFC 9449 §8: no nonce yet, the server hands one out
    assert first.status_code == 400 and first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["DPoP-Nonce"]
    wrong = app.token(app.proof("POST", "/token", nonce="not-the-nonce"), **form)
    assert wrong.status_code == 400 and wrong.json()["error"] == "use_dpop_nonce"
    tokens = app.token(app.proof("POST", "/token", nonce=nonce), **form)
    assert tokens.status_code == 200, tokens.text
    token = tokens.json()["access_token"]

    # RFC 9449 §9: at a resource, 401 with a DPoP challenge and the nonce
    bare = app.userinfo(token)
    assert bare.status_code == 401 and 'error="use_dpop_nonce"' in bare.headers["WWW-Authenticate"]
    assert bare.headers["DPoP-Nonce"] == nonce
    good = app.userinfo(token, proof=app.proof("GET", "/userinfo", access_token=token, nonce=nonce))
    assert good.status_code == 200, good.text
    # a nonce is good for its time slot and the next one, not longer
    op.clock.advance(700)
    refresh = tokens.json()["refresh_token"]
    stale = app.token(app.proof("POST", "/token", nonce=nonce), grant_type="refresh_token",
                      refresh_token=refresh)
    assert stale.status_code == 400 and stale.json()["error"] == "use_dpop_nonce"
    fresh = stale.headers["DPoP-Nonce"]
    assert fresh != nonce
    again = app.token(app.proof("POST", "/token", nonce=fresh), grant_type="refresh_token",
                      refresh_token=refresh)
    assert again.status_code == 200, again.text


def test_tenant_wide_switch_requires_par_for_every_client(demo_tenant: Tenant, keyring: Any,
                                                           tmp_path: Any) -> None:
    import falcon.testing

    from policy_sso.config import ParSettings
    from policy_sso.sessions.store import open_store
    from server.app import create_app

    settings = replace(demo_tenant.settings, par=ParSettings(required=True))
    tenant = Tenant(demo_tenant.directory, settings, demo_tenant.clients, demo_tenant.users,
                    demo_tenant.policies, demo_tenant.policy_files)
    store = open_store("memory://", settings.lifetime)
    client = falcon.testing.TestClient(create_app(tenant, store, keyring))
    doc = client.simulate_get("/.well-known/openid-configuration").json
    assert doc["require_pushed_authorization_requests"] is True
    resp = client.simulate_get("/authorize", params={"client_id": "portal", "response_type": "code",
                                                     "redirect_uri": "http://127.0.0.1:9001/callback",
                                                     "scope": "openid", "state": "s"})
    location = urllib.parse.urlsplit(resp.headers["Location"])
    assert urllib.parse.parse_qs(location.query)["error"] == ["invalid_request"]
